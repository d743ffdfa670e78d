"""Database leases and the evaluator that runs under one: one holder, one evaluation, at a time."""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from spiralogic import lease
from spiralogic.db import create_engine
from spiralogic.evaluator import LEASE
from spiralogic.migrate import upgrade
from spiralogic.state import app_state
from spiralogic.tables import ConsciousnessTurnMeta, Lease, ModeTransition

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
TTL = timedelta(seconds=30)


@pytest.fixture
def engine(database_url):
    upgrade(database_url)
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def holder_of(engine, name="job"):
    with engine.connect() as conn:
        return conn.execute(sa.select(Lease.holder).where(Lease.name == name)).scalar()


def test_one_holder_at_a_time(engine):
    assert lease.acquire(engine, "job", "a", TTL, T0)
    assert not lease.acquire(engine, "job", "b", TTL, T0 + timedelta(seconds=1))
    assert holder_of(engine) == "a"


def test_names_are_independent(engine):
    assert lease.acquire(engine, "job", "a", TTL, T0)
    assert lease.acquire(engine, "other", "b", TTL, T0)


def test_the_holder_renews(engine):
    assert lease.acquire(engine, "job", "a", TTL, T0)
    assert lease.acquire(engine, "job", "a", TTL, T0 + timedelta(seconds=20))
    # Past the first expiry, but within the renewed one: still a's.
    assert not lease.acquire(engine, "job", "b", TTL, T0 + timedelta(seconds=40))
    assert holder_of(engine) == "a"


def test_another_takes_over_after_expiry(engine):
    assert lease.acquire(engine, "job", "a", TTL, T0)
    assert not lease.acquire(engine, "job", "b", TTL, T0 + TTL)
    assert lease.acquire(engine, "job", "b", TTL, T0 + TTL + timedelta(seconds=1))
    assert not lease.acquire(engine, "job", "a", TTL, T0 + TTL + timedelta(seconds=2))
    assert holder_of(engine) == "b"


def test_release_frees_the_lease_for_the_holder_only(engine):
    assert lease.acquire(engine, "job", "a", TTL, T0)
    lease.release(engine, "job", "b")
    assert holder_of(engine) == "a"
    lease.release(engine, "job", "a")
    assert holder_of(engine) is None
    assert lease.acquire(engine, "job", "b", TTL, T0 + timedelta(seconds=1))


def race(engine, now, contenders=8):
    """``contenders`` threads call acquire at once; the holders that won."""
    barrier = threading.Barrier(contenders)
    won, failed = [], []

    def contend(holder):
        barrier.wait()
        try:
            if lease.acquire(engine, "job", holder, TTL, now):
                won.append(holder)
        except Exception as exc:  # noqa: BLE001 - reported below, not swallowed
            failed.append(exc)

    threads = [threading.Thread(target=contend, args=(f"worker-{i}",)) for i in range(contenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not failed
    return won


@pytest.mark.parametrize("attempt", range(3))
def test_racing_for_a_new_lease_one_wins(engine, attempt):
    won = race(engine, T0)
    assert len(won) == 1
    assert holder_of(engine) == won[0]


@pytest.mark.parametrize("attempt", range(3))
def test_racing_for_an_expired_lease_one_wins(engine, attempt):
    assert lease.acquire(engine, "job", "dead", TTL, T0)
    won = race(engine, T0 + TTL + timedelta(seconds=1))
    assert len(won) == 1
    assert holder_of(engine) == won[0]


# the evaluator


def slow_turns(app, at, count=25):
    """Turns whose first tokens all missed the soft budget: evaluating moves full to lite."""
    row = {
        "user_id": "u",
        "created_at": at,
        "orchestrator": "spiralogic",
        "orchestrator_mode": "lite",
        "metadata": {"latencyMs": 650, "firstTokenMs": 600, "degradations": ["soft_budget"]},
        "resonance": {},
    }
    with app_state(app).engine.begin() as conn:
        conn.execute(sa.insert(ConsciousnessTurnMeta.__table__), [{**row, "id": uuid.uuid4()} for _ in range(count)])


class Driven:
    """An evaluator whose clocks (its own and its controller's) read ``now``, its evaluations counted."""

    def __init__(self, app, now: datetime = T0):
        self.evaluator = app_state(app).evaluator
        modes = app_state(app).modes
        self.now = now
        self.evaluations = 0
        evaluate = modes.evaluate
        self.evaluator.clock = modes.clock = lambda: self.now

        def counting():
            self.evaluations += 1
            return evaluate()

        modes.evaluate = counting

    def run_once(self) -> bool:
        return self.evaluator.run_once()


def transition_count(app) -> int:
    with app_state(app).engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(ModeTransition.__table__)).scalar()


def test_two_evaluators_in_the_same_period_evaluate_once(make_app, database_url):
    one, two = make_app(database_url), make_app(database_url)
    slow_turns(one, T0 - timedelta(seconds=5))
    first, second = Driven(one), Driven(two)
    assert first.run_once() is True
    assert second.run_once() is False
    first.now = second.now = T0 + timedelta(seconds=10)
    assert first.run_once() is True  # the holder keeps evaluating
    assert second.run_once() is False
    assert (first.evaluations, second.evaluations) == (2, 0)
    assert transition_count(one) == 1
    assert app_state(two).modes.state().mode == "lite"


def test_a_standby_evaluator_takes_over_when_the_holder_stops_renewing(make_app, database_url):
    one, two = make_app(database_url), make_app(database_url)
    first, second = Driven(one), Driven(two)
    assert first.run_once()
    ttl = timedelta(seconds=first.evaluator.interval_s * 3)
    second.now = T0 + ttl - timedelta(seconds=1)
    assert not second.run_once()
    second.now = T0 + ttl + timedelta(seconds=1)
    assert second.run_once()
    assert second.evaluations == 1
    assert holder_of(app_state(two).engine, LEASE) == second.evaluator.holder
    first.now = second.now
    assert not first.run_once()  # it lost the lease: it must not evaluate beside the new holder
    assert first.evaluations == 1


def test_stop_releases_the_lease(make_app, database_url):
    one, two = make_app(database_url, **{"evaluator.interval_s": 0.05}), make_app(database_url)
    first, second = app_state(one).evaluator, app_state(two).evaluator
    first.start()
    try:
        for _ in range(100):
            if holder_of(app_state(one).engine, LEASE) == first.holder:
                break
            threading.Event().wait(0.05)
        assert holder_of(app_state(one).engine, LEASE) == first.holder
    finally:
        first.stop()
    assert holder_of(app_state(one).engine, LEASE) is None
    assert second.run_once()

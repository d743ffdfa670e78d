"""The service-level mode controller: transitions, hysteresis, per-turn mode, one state for all workers.

Time is simulated: turn rows are written with chosen ``created_at`` and the
controller's clocks (``clock`` for the evaluation, ``ticks`` for its read cache)
are set to the simulated moment. Every test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from spiralogic.db import create_engine
from spiralogic.state import app_state
from spiralogic.tables import ConsciousnessTurnMeta, RuntimeFlag, ServiceMode

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
TURNS = ConsciousnessTurnMeta.__table__
# What the pipeline writes for each kind of turn (see pipeline._record and _resonance).
KINDS = {
    "ok": ("full", {"latencyMs": 300, "firstTokenMs": 200}, {}),
    "slow": ("lite", {"latencyMs": 650, "firstTokenMs": 600, "degradations": ["soft_budget"]}, {}),
    "hard": ("fallback", {"latencyMs": 700, "firstTokenMs": 690, "degradations": ["soft_budget", "hard_budget"]}, {}),
    "error": ("fallback", {"latencyMs": 130, "firstTokenMs": 125}, {"error": ["orchestrator:SimulatedUpstreamError"]}),
    # Answered in fallback from the start (service in fallback, or shed): no provider was tried.
    "shed": ("fallback", {"latencyMs": 8, "firstTokenMs": 6}, {}),
    # A fallback-mode probe that tried lite and succeeded.
    "probe": ("lite", {"latencyMs": 280, "firstTokenMs": 190}, {}),
}


class Sim:
    """Simulated time and traffic for one app."""

    def __init__(self, app):
        self.app = app
        self.state = app_state(app)
        self.modes = self.state.modes
        self.now = T0
        self.tick = 0.0
        self.modes.clock = lambda: self.now
        self.modes.ticks = lambda: self.tick
        self.state.flags.clock = lambda: self.tick

    def at(self, seconds: float) -> "Sim":
        """Move simulated time to T0 + seconds (and past every read cache)."""
        self.now = T0 + timedelta(seconds=seconds)
        self.tick += 3600
        return self

    def turns(self, seconds: float, **counts: int) -> None:
        """Write turn rows created at T0 + seconds: ``ok=18, slow=2`` ..."""
        created = T0 + timedelta(seconds=seconds)
        rows = []
        for kind, count in counts.items():
            mode, metadata, resonance = KINDS[kind]
            rows += [
                {
                    "id": uuid.uuid4(),
                    "user_id": f"user-{i}",
                    "created_at": created,
                    "orchestrator": "spiralogic",
                    "orchestrator_mode": mode,
                    "metadata": metadata,
                    "resonance": resonance,
                }
                for i in range(count)
            ]
        with self.state.engine.begin() as conn:
            conn.execute(sa.insert(TURNS), rows)

    def evaluate(self, seconds: float) -> str:
        return self.at(seconds).modes.evaluate().mode

    def set_flag(self, key: str, value) -> None:
        self.state.flags.set(key, value, actor="test", reason="test", now=self.now)


@pytest.fixture
def sim(make_app, database_url):
    return Sim(make_app(database_url))


def into_lite(sim: Sim) -> None:
    """full -> lite at T0: 10 of 25 first tokens slow in the last minute."""
    sim.turns(-10, ok=15, slow=10)
    assert sim.evaluate(0) == "lite"


def into_fallback(sim: Sim) -> None:
    """full -> fallback at T0: 4 of 20 turns met provider errors."""
    sim.turns(-10, ok=16, error=4)
    assert sim.evaluate(0) == "fallback"


# full -> lite


def test_starts_full_with_no_transition(sim):
    assert sim.modes.state().mode == "full"
    assert sim.evaluate(0) == "full"
    assert sim.modes.transitions() == []


def test_slow_first_tokens_over_the_ratio_send_full_to_lite(sim):
    sim.turns(-50, ok=8, slow=2)
    sim.turns(-20, ok=8, slow=2)  # 4 of 20 = the 20% trigger, over min_turns
    assert sim.evaluate(0) == "lite"
    state = sim.modes.state()
    assert (state.mode, state.since) == ("lite", T0)
    assert "soft budget" in state.reason


def test_a_tiny_sample_does_not_trigger(sim):
    sim.turns(-10, slow=19)  # every turn slow, but one short of min_turns
    assert sim.evaluate(0) == "full"
    assert sim.modes.transitions() == []


def test_a_ratio_below_the_threshold_does_not_trigger(sim):
    sim.turns(-10, ok=84, slow=16)  # 16%
    assert sim.evaluate(0) == "full"


def test_turns_outside_the_window_do_not_count(sim):
    sim.turns(-61, slow=40)
    sim.turns(-10, ok=20)
    assert sim.evaluate(0) == "full"


# lite -> full


def steady(sim: Sim, until: int, start: int = 30, **counts: int) -> None:
    for second in range(start, until, 60):
        sim.turns(second, **(counts or {"ok": 20}))


def test_lite_returns_to_full_after_the_recovery_window(sim):
    into_lite(sim)
    steady(sim, until=600)
    assert sim.evaluate(299) == "lite"
    assert sim.evaluate(301) == "full"
    assert sim.modes.state().reason == "stable for 5 minutes"


def test_a_noisy_minute_inside_the_recovery_window_keeps_lite(sim):
    into_lite(sim)
    steady(sim, until=700, ok=100)
    sim.turns(150, ok=5, slow=20)  # one bad minute; over all five it is only 20 of 525
    assert sim.evaluate(301) == "lite"
    assert sim.evaluate(449) == "lite"
    assert sim.evaluate(451) == "full"  # five calm minutes since the noise


def test_recovery_needs_half_the_trigger_ratio(sim):
    into_lite(sim)
    steady(sim, until=400, ok=17, slow=3)  # 15%: under the 20% trigger, not under 10%
    assert sim.evaluate(301) == "lite"
    assert sim.evaluate(390) == "lite"


def test_recovery_waits_for_errors_under_half_their_trigger(sim):
    into_lite(sim)
    steady(sim, until=400, ok=97, error=3)  # 3%: under the 5% fallback trigger, not under 2.5%
    assert sim.evaluate(301) == "lite"


# -> fallback and back


@pytest.mark.parametrize("kind", ["hard", "error"])
def test_hard_budgets_or_errors_send_full_to_fallback(sim, kind):
    sim.turns(-10, ok=36, **{kind: 4})  # 10%: over both fallback ratios
    assert sim.evaluate(0) == "fallback"
    assert {"hard": "hard budget", "error": "provider errors"}[kind] in sim.modes.state().reason


@pytest.mark.parametrize("kind", ["hard", "error"])
def test_hard_budgets_or_errors_send_lite_to_fallback(sim, kind):
    into_lite(sim)
    sim.turns(20, probe=36, **{kind: 4})
    assert sim.evaluate(55) == "fallback"  # the slow turns before T0 are out of the window


def test_fallback_returns_to_lite_after_ten_quiet_minutes(sim):
    into_fallback(sim)
    steady(sim, until=900, shed=95, probe=5)
    assert sim.evaluate(599) == "fallback"
    assert sim.evaluate(601) == "lite"
    assert sim.modes.state().reason == "error rate under 1% for 10 minutes"


def test_fallback_holds_while_the_probes_keep_failing(sim):
    # 1 probe in 10 fails: 10% of the turns that met a provider, but under 1% of all turns,
    # most of which were answered in fallback without trying one.
    into_fallback(sim)
    steady(sim, until=3600, shed=100, probe=9, error=1)
    for second in (601, 1200, 3599):
        assert sim.evaluate(second) == "fallback"


def test_fallback_never_moves_to_baseline_by_itself(make_app, database_url):
    sim = Sim(make_app(database_url, orchestrator="spiralogic"))
    into_fallback(sim)
    steady(sim, until=3600, shed=80, error=20)
    assert {sim.evaluate(second) for second in range(0, 3600, 30)} == {"fallback"}
    steady(sim, start=3630, until=4300, shed=95, probe=5)
    assert {sim.evaluate(second) for second in range(3600, 4300, 30)} == {"fallback", "lite"}
    assert sim.state.settings.orchestrator == "spiralogic"
    assert [row["to_mode"] for row in sim.modes.transitions()] == ["lite", "fallback"]


# the audit trail


def test_every_transition_is_recorded_with_reason_actor_and_time(sim):
    into_lite(sim)
    assert sim.evaluate(10) == "lite"  # no change: nothing recorded
    sim.turns(20, probe=18, error=2)
    assert sim.evaluate(55) == "fallback"
    sim.modes.transition("full", "root cause fixed", actor="ops@example", now=T0 + timedelta(seconds=60))
    rows = sim.modes.transitions()
    assert [(r["from_mode"], r["to_mode"], r["actor"], r["at"]) for r in rows] == [
        ("fallback", "full", "ops@example", T0 + timedelta(seconds=60)),
        ("lite", "fallback", "controller", T0 + timedelta(seconds=55)),
        ("full", "lite", "controller", T0),
    ]
    assert rows[0]["reason"] == "root cause fixed"
    assert all(row["reason"] for row in rows)


def test_an_unknown_mode_is_refused(sim):
    with pytest.raises(ValueError):
        sim.modes.transition("baseline", "nope", actor="test", now=T0)
    assert sim.modes.transitions() == []


# the mode a turn starts in


def test_forced_mode_wins(sim):
    sim.set_flag("forced_mode", "fallback")
    assert sim.modes.mode_for_turn() == "fallback"
    into_fallback(sim)
    sim.set_flag("forced_mode", "full")
    assert sim.at(1).modes.mode_for_turn() == "full"
    sim.set_flag("forced_mode", None)
    assert sim.at(2).modes.mode_for_turn(random.Random(0)) in ("fallback", "lite")


def test_lite_by_default_starts_turns_lite_in_a_full_service(sim):
    sim.set_flag("lite_by_default", True)
    assert sim.modes.mode_for_turn() == "lite"
    sim.set_flag("lite_by_default", False)
    assert sim.at(1).modes.mode_for_turn() == "full"


def test_a_fallback_service_sends_a_share_of_probes_lite(sim):
    into_fallback(sim)
    rng = random.Random(1234)
    modes = [sim.modes.mode_for_turn(rng) for _ in range(4000)]
    assert set(modes) == {"fallback", "lite"}
    assert 0.035 < modes.count("lite") / len(modes) < 0.065  # fallback_probe_ratio = 0.05


def test_no_probes_with_a_zero_ratio(make_app, database_url):
    sim = Sim(make_app(database_url, **{"modes.fallback_probe_ratio": 0}))
    into_fallback(sim)
    rng = random.Random(1234)
    assert {sim.modes.mode_for_turn(rng) for _ in range(2000)} == {"fallback"}


class NeverProbe(random.Random):
    def random(self):
        return 0.999


def dead_url(database_url: str) -> str:
    if database_url.startswith("sqlite"):
        return "sqlite:////nonexistent-directory/spiralogic.db"
    return "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2"


def test_a_dead_database_keeps_the_last_known_mode(sim, database_url):
    into_fallback(sim)
    sim.set_flag("lite_by_default", True)
    assert sim.at(1).modes.mode_for_turn(NeverProbe()) == "fallback"
    sim.state.engine.dispose()
    dead = create_engine(dead_url(database_url))
    sim.modes.engine = sim.state.flags.engine = dead
    try:
        for second in (2, 3):
            assert sim.at(second).modes.mode_for_turn(NeverProbe()) == "fallback"
            assert sim.modes.cached_state().mode == "fallback"
            assert sim.state.flags.all()["lite_by_default"] is True
        with pytest.raises(sa.exc.OperationalError):
            sim.modes.state()
    finally:
        dead.dispose()


def test_dropped_tables_keep_the_last_known_mode(sim):
    into_lite(sim)
    assert sim.at(1).modes.cached_state().mode == "lite"
    sim.set_flag("forced_mode", "full")
    assert sim.modes.mode_for_turn() == "full"
    with sim.state.engine.begin() as conn:
        ServiceMode.__table__.drop(conn)
        RuntimeFlag.__table__.drop(conn)
    assert sim.at(2).modes.mode_for_turn() == "full"
    assert sim.modes.cached_state().mode == "lite"


def test_a_process_that_never_read_the_mode_starts_full(sim, database_url):
    dead = create_engine(dead_url(database_url))
    sim.modes.engine = sim.state.flags.engine = dead
    try:
        assert sim.modes.mode_for_turn() == "full"
    finally:
        dead.dispose()


# one state for every worker


def test_two_workers_see_the_same_state(make_app, database_url):
    one, two = Sim(make_app(database_url)), Sim(make_app(database_url))
    assert two.modes.cached_state().mode == "full"
    into_lite(one)
    assert two.modes.state() == one.modes.state()
    assert two.modes.transitions() == one.modes.transitions()
    # The other worker evaluates from the same rows: it promotes lite at the same moment.
    steady(one, until=400)
    assert two.evaluate(299) == "lite"
    assert two.evaluate(301) == "full"
    assert one.modes.state() == two.modes.state()
    assert one.modes.state().since == T0 + timedelta(seconds=301)


def test_the_cached_read_catches_up_within_cache_s(make_app, database_url):
    one, two = Sim(make_app(database_url)), Sim(make_app(database_url))
    cache_s = two.modes.rules.cache_s
    assert two.modes.cached_state().mode == "full"
    into_lite(one)
    two.tick += cache_s / 2
    assert two.modes.cached_state().mode == "full"  # still within the cache period
    two.tick += cache_s
    assert two.modes.cached_state().mode == "lite"
    assert two.modes.mode_for_turn() == "lite"

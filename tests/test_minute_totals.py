"""Kept minute totals give a whole read's answer, and read only what is new, on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from test_monitoring import T0, engine, insert, minute, turn  # noqa: F401 - fixtures

from spiralogic import monitoring
from spiralogic.alerting import NotReady
from spiralogic.minute_totals import FIRST_READS, MINUTE, REREAD, SETTLE, MinuteTotals

HOUR = timedelta(hours=1)


def whole(engine, since, until, orchestrator=None) -> monitoring.Totals:
    minutes = monitoring.totals_per_minute(engine, since, until).values()
    totals = [t for by_orchestrator in minutes for name, t in by_orchestrator.items() if orchestrator in (None, name)]
    return sum(totals, monitoring.Totals())


def random_turns(rng: random.Random, since, seconds: int, count: int) -> list[dict]:
    return [
        turn(
            since + timedelta(seconds=rng.uniform(0, seconds)),
            orchestrator=rng.choice(["baseline", "spiralogic"]),
            mode=rng.choice(["full", "fallback"]),
            cache_hit=rng.random() < 0.5,
            error=rng.random() < 0.1,
            qualityScore=rng.choice([None, 0.25, 0.5, 1.0]),
            tokens={"completion": rng.randint(1, 90)},
        )
        for _ in range(count)
    ]


def spans_read(engine) -> list[timedelta]:
    """From now on, how much time each query on ``engine`` covers: its last time parameter less its first."""
    spans: list[timedelta] = []

    def seen(conn, cursor, sql, parameters, *rest) -> None:
        values = parameters.values() if isinstance(parameters, dict) else parameters
        times = [as_time(value) for value in values if as_time(value) is not None]
        spans.append(max(times) - min(times) if times else timedelta(0))

    sa.event.listen(engine, "before_cursor_execute", seen)
    return spans


def as_time(value) -> datetime | None:
    """A time parameter as the driver gets it: a datetime, or SQLite's text."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=None)
    try:
        return datetime.fromisoformat(value).replace(tzinfo=None) if isinstance(value, str) else None
    except ValueError:
        return None


def test_a_window_adds_up_to_a_whole_read_round_after_round(engine):
    rng = random.Random(5)
    insert(engine, random_turns(rng, T0 - HOUR, 7200, 400))
    minutes = MinuteTotals(engine)
    for n in range(40):
        now = T0 + timedelta(seconds=7.3 * n)
        insert(engine, random_turns(rng, now - SETTLE, SETTLE.total_seconds(), 3))  # stored up to SETTLE after its time
        for span, orchestrator in ((HOUR, None), (timedelta(minutes=5), "spiralogic")):
            assert minutes.window(now - span, now, orchestrator, now) == whole(engine, now - span, now, orchestrator)


def test_after_the_first_round_a_round_reads_only_the_ends_and_the_newly_closed_minute(engine):
    times = [T0 - timedelta(seconds=s) for s in range(0, 7200, 20)]
    insert(engine, [turn(at) for at in times])
    minutes = MinuteTotals(engine)
    spans = spans_read(engine)
    minutes.window(T0 - HOUR, T0, None, T0)
    assert max(spans) >= timedelta(minutes=58)
    spans.clear()
    for n in range(1, 13):
        now = T0 + timedelta(seconds=10 * n + 0.5)
        statements = len(spans)
        assert minutes.window(now - HOUR, now, None, now).count == sum(now - HOUR <= at < now for at in times)
        assert minutes.window(now - timedelta(minutes=5), now, "spiralogic", now).count == sum(now - timedelta(minutes=5) <= at < now for at in times)
        # each window's ragged first minute, the minutes not kept yet (once for both), a newly closed minute
        assert len(spans) - statements <= 4
    assert max(spans) <= SETTLE + MINUTE


def test_a_turn_stored_late_counts_once_its_minute_is_read_again_and_not_after(engine):
    insert(engine, [turn(minute(m)) for m in range(10)])
    minutes = MinuteTotals(engine)
    now = minute(11)

    def counted(at) -> int:
        return minutes.window(minute(5), minute(10), None, at).count

    assert counted(now) == 5
    insert(engine, [turn(minute(7.5))])  # replayed from the journal, say
    assert counted(now + timedelta(seconds=10)) == 5
    assert counted(now + REREAD) == 6
    insert(engine, [turn(minute(8.5))])
    assert counted(now + 3 * REREAD) == 6


def test_a_minute_first_read_when_already_old_is_read_only_once(engine):
    insert(engine, [turn(minute(m)) for m in range(10)])
    minutes = MinuteTotals(engine)
    now = minute(10) + REREAD
    assert minutes.window(minute(0), minute(10), None, now).count == 10
    spans = spans_read(engine)
    assert minutes.window(minute(0), minute(10), None, now + REREAD).count == 10
    assert spans == []


def test_a_long_window_is_read_an_hour_a_round_and_not_ready_until_all_of_it_is_in(engine):
    insert(engine, random_turns(random.Random(3), T0 - 3 * HOUR, 3 * 3600, 300))
    rounds = [T0 + timedelta(seconds=10 * n) for n in range(3)]
    expected = whole(engine, rounds[2] - 3 * HOUR, rounds[2])
    minutes = MinuteTotals(engine)
    spans = spans_read(engine)
    for now in rounds[:2]:
        with pytest.raises(NotReady):
            minutes.window(now - 3 * HOUR, now, None, now)
    assert minutes.window(rounds[2] - 3 * HOUR, rounds[2], None, rounds[2]) == expected
    assert max(spans) <= timedelta(minutes=FIRST_READS)


def test_a_minute_no_window_used_in_a_round_is_let_go(engine):
    insert(engine, [turn(minute(m)) for m in range(30)])
    minutes = MinuteTotals(engine)
    now = minute(40)
    minutes.window(minute(0), minute(30), None, now)
    spans = spans_read(engine)
    minutes.window(minute(0), minute(30), None, now + timedelta(seconds=10))
    assert spans == []  # all kept
    minutes.window(minute(20), minute(30), None, now + timedelta(seconds=20))
    minutes.window(minute(0), minute(30), None, now + timedelta(seconds=30))
    assert spans == [timedelta(minutes=20)]  # minutes 0 to 19 again, in one read

"""Telemetry never slows or fails a turn, and a database blip loses nothing.

The blips are real: PostgreSQL sits behind a TCP proxy (tests/tcp_proxy.py)
that the tests cut (every connection dropped, new ones refused) and restore;
the server itself is never touched. Two levels here: the TelemetryWriter
alone, and the Flask app; a real gunicorn server under the same faults (and
graceful stops, a worker killed with SIGKILL, a restart replaying the
journal) is in tests/reliability.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import threading
import time
import uuid
from datetime import datetime, timezone

import pytest
from polling import wait_for
from reliability.support import stored_ids
from tcp_proxy import postgresql_only

from spiralogic.db import create_engine
from spiralogic.journal import CLAIM_MARK, WRITE_MARK, Journal
from spiralogic.migrate import upgrade
from spiralogic.state import app_state
from spiralogic.telemetry import TelemetryWriter, as_row
from spiralogic.turn import Turn, TurnRecord

TURN = Turn(turn_id="t", request_id="r", user_id="telemetry", text="hello", element="air", orchestrator="baseline")
BODY = {"userId": "blip-user", "text": "Help me find clarity", "element": "air"}


def record(**fields) -> TurnRecord:
    values = {
        "id": str(uuid.uuid4()),
        "created_at": datetime.now(timezone.utc),
        "user_id": "telemetry",
        "session_id": None,
        "orchestrator": "baseline",
        "orchestrator_mode": "full",
        "element": "air",
        "metadata": {"latencyMs": 3},
        "resonance": {},
        **fields,
    }
    return TurnRecord(**values)


@pytest.fixture
def make_writer(tmp_path):
    """TelemetryWriters on the app's own engine setup; closed and disposed afterwards."""
    made = []

    def build(url: str, journal: Journal | None = None, **options) -> TelemetryWriter:
        settings = {"queue_size": 1000, "batch_size": 20, "flush_interval": 0.02, "replay_interval": 60.0, **options}
        writer = TelemetryWriter(create_engine(url), journal or Journal(tmp_path / "journal"), **settings)
        made.append(writer)
        return writer

    yield build
    for writer in made:
        writer.close(timeout=5)
        writer.engine.dispose()


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# --- the writer alone ---------------------------------------------------------------------------


@pytest.mark.postgres
@postgresql_only
def test_a_blip_spills_without_slowing_submit_and_the_next_write_replays_each_row_once(database_url, proxy, make_writer):
    upgrade(database_url)
    writer = make_writer(proxy.url_for(database_url))
    before = [record() for _ in range(5)]
    for row in before:
        writer.submit(TURN, row)
    assert writer.flush() and writer.counts["written"] == 5

    proxy.cut()
    during = [record() for _ in range(100)]
    started = time.perf_counter()
    for row in during:
        writer.submit(TURN, row)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.05, f"100 submits took {elapsed * 1000:.1f} ms with the database down"
    assert writer.flush()
    assert writer.counts["spilled"] == 100
    assert writer.journal.pending() == 100
    assert len(stored_ids(database_url)) == 5

    proxy.restore()
    after = record()
    writer.submit(TURN, after)
    assert writer.flush()
    ids = stored_ids(database_url)
    assert sorted(ids) == sorted(r.id for r in [*before, *during, after])  # every row, exactly once
    assert writer.journal.pending() == 0
    expected = {"submitted": 106, "written": 6, "spilled": 100, "replayed": 100, "dropped": 0}
    assert {key: writer.counts[key] for key in expected} == expected


@pytest.mark.postgres
@postgresql_only
def test_an_idle_writer_replays_on_its_own_once_the_database_is_back(database_url, proxy, make_writer):
    upgrade(database_url)
    writer = make_writer(proxy.url_for(database_url), replay_interval=0.2)
    proxy.cut()
    rows = [record() for _ in range(30)]
    for row in rows:
        writer.submit(TURN, row)
    assert writer.flush() and writer.counts["spilled"] == 30
    time.sleep(0.5)  # replays tried (and failed) while cut
    proxy.restore()
    # No new turn: only the writer's timer can bring the rows in.
    assert wait_for(lambda: writer.counts["replayed"] == 30, timeout=10)
    assert sorted(stored_ids(database_url)) == sorted(r.id for r in rows)
    assert writer.journal.pending() == 0


@pytest.mark.postgres
@postgresql_only
def test_close_with_the_database_down_spills_and_the_next_process_replays_at_start_up(database_url, proxy, make_writer, tmp_path):
    upgrade(database_url)
    url = proxy.url_for(database_url)
    writer = make_writer(url, flush_interval=30.0, batch_size=1000)  # rows stay queued until close
    rows = [record() for _ in range(25)]
    for row in rows:
        writer.submit(TURN, row)
    proxy.cut()
    started = time.monotonic()
    writer.close(timeout=5)
    assert time.monotonic() - started < 3
    assert writer.counts["spilled"] == 25 and writer.journal.pending() == 25

    proxy.restore()
    restarted = make_writer(url, replay_interval=0.2)  # same journal directory: the worker's successor
    assert wait_for(lambda: restarted.counts["replayed"] == 25, timeout=10), "not replayed at start-up"
    assert sorted(stored_ids(database_url)) == sorted(r.id for r in rows)
    assert restarted.journal.pending() == 0


@pytest.mark.postgres
def test_replaying_the_same_journal_file_twice_stores_each_row_once(database_url, make_writer, tmp_path):
    upgrade(database_url)
    journal = Journal(tmp_path / "journal")
    rows = [as_row(record()) for _ in range(10)]
    journal.append(rows)
    [spilled] = list(journal.directory.glob("*.jsonl"))
    content = spilled.read_bytes()
    writer = make_writer(database_url, journal)
    assert writer.replay_journal() == 10
    spilled.write_bytes(content)  # as if a worker died after writing and before deleting
    assert writer.replay_journal() == 10
    assert sorted(stored_ids(database_url)) == sorted(row["id"] for row in rows)
    assert journal.pending() == 0


@pytest.mark.postgres
def test_files_left_by_a_dead_process_are_picked_up_and_a_live_claim_is_respected(database_url, make_writer, tmp_path):
    upgrade(database_url)
    journal = Journal(tmp_path / "journal")
    claimed = [as_row(record()) for _ in range(4)]
    half_written = [as_row(record()) for _ in range(3)]
    held = [as_row(record()) for _ in range(2)]
    dead = dead_pid()
    journal.append(claimed)
    [path] = journal.directory.glob("*.jsonl")
    path.rename(path.with_name(f"{path.name}{CLAIM_MARK}{dead}"))  # died while replaying
    lines = "".join(json.dumps(row) + "\n" for row in half_written)
    (journal.directory / f"{dead}-cut.jsonl{WRITE_MARK}{dead}").write_text(lines + '{"id": "cut sho')  # died while spilling
    live = subprocess.Popen(["sleep", "60"])
    try:
        journal.append(held)
        [path] = journal.directory.glob("*.jsonl")
        path.rename(path.with_name(f"{path.name}{CLAIM_MARK}{live.pid}"))  # another worker is replaying it
        writer = make_writer(database_url, journal, replay_interval=0.1)  # no submit: start-up replay
        assert wait_for(lambda: len(stored_ids(database_url)) == 7, timeout=10)
        time.sleep(0.3)
        assert sorted(stored_ids(database_url)) == sorted(row["id"] for row in claimed + half_written)
        assert journal.pending() == 2  # still claimed by a live process
    finally:
        live.kill()
        live.wait()
    assert wait_for(lambda: writer.counts["replayed"] == 9, timeout=10)  # its claimant died
    assert journal.pending() == 0 and len(stored_ids(database_url)) == 9


@pytest.mark.postgres
def test_a_full_queue_drops_and_counts_and_never_blocks(database_url, make_writer):
    upgrade(database_url)
    inside, release = threading.Event(), threading.Event()

    def slow_observer(turn, record):  # a plugin hook that hangs holds the writer
        inside.set()
        release.wait(10)

    writer = make_writer(database_url, queue_size=5, batch_size=100, on_record=slow_observer)
    first = record()
    writer.submit(TURN, first)
    assert inside.wait(5)
    rest = [record() for _ in range(20)]
    started = time.perf_counter()
    for row in rest:
        writer.submit(TURN, row)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.05, f"20 submits took {elapsed * 1000:.1f} ms with the queue full"
    assert writer.counts["submitted"] == 6 and writer.counts["dropped"] == 15
    assert not writer.flush(timeout=0.2)  # says so when the rows are not through
    release.set()
    assert writer.flush()
    assert sorted(stored_ids(database_url)) == sorted(r.id for r in [first, *rest[:5]])


@pytest.mark.postgres
def test_close_with_a_stuck_writer_and_a_full_queue_returns_and_spills(database_url, make_writer):
    upgrade(database_url)
    inside, release = threading.Event(), threading.Event()

    def stuck_observer(turn, record):
        inside.set()
        release.wait(10)

    writer = make_writer(database_url, queue_size=5, batch_size=100, on_record=stuck_observer)
    rows = [record() for _ in range(6)]
    writer.submit(TURN, rows[0])
    assert inside.wait(5)
    for row in rows[1:]:
        writer.submit(TURN, row)
    started = time.monotonic()
    writer.close(timeout=0.5)  # once blocked forever: put(STOP) on a full queue
    assert time.monotonic() - started < 2
    assert writer.journal.pending() == 6  # the row in the writer's hands too
    release.set()  # the late writer finishes its row, then replays the journal
    assert wait_for(lambda: len(stored_ids(database_url)) == 6, timeout=10)
    time.sleep(0.2)
    assert sorted(stored_ids(database_url)) == sorted(r.id for r in rows)


@pytest.mark.postgres
@postgresql_only
def test_a_row_the_database_refuses_is_set_aside_and_cannot_block_the_journal(database_url, make_writer, tmp_path):
    upgrade(database_url)
    journal = Journal(tmp_path / "journal")
    poison = as_row(record(metadata={"note": "nul \x00 byte"}))  # JSONB refuses \u0000
    good = [as_row(record()) for _ in range(3)]
    journal.append([poison, *good[:1]])
    journal.append(good[1:])
    writer = make_writer(database_url, journal)
    assert writer.replay_journal() == 4
    direct = [record(), record(metadata={"x": "\x00"}), record()]
    for row in direct:
        writer.submit(TURN, row)
    assert writer.flush()
    assert sorted(stored_ids(database_url)) == sorted([row["id"] for row in good] + [direct[0].id, direct[2].id])
    assert writer.counts["rejected"] == 2 and journal.pending() == 0
    assert len(list((journal.directory / "rejected").glob("*.jsonl"))) == 2


@pytest.mark.postgres
@pytest.mark.parametrize(
    "odd, expected",
    [
        ({"ratio": float("nan")}, {"ratio": None}),  # JSON has no NaN; PostgreSQL would refuse the row
        ({"big": 2**70}, {"big": 2**70}),  # past 64 bits: the standard library's encoder takes it
    ],
    ids=["nan", "past-64-bits"],
)
def test_values_json_has_no_type_for_are_stored_as_plain_json(database_url, make_writer, odd, expected):
    upgrade(database_url)
    writer = make_writer(database_url)
    tags = {7: "int key", "at": datetime(2026, 1, 2, tzinfo=timezone.utc)}
    writer.submit(TURN, record(metadata={"latencyMs": 3, "tags": tags, **odd}))
    assert writer.flush()
    with writer.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT metadata FROM consciousness_turn_meta").scalar_one()
    metadata = stored if isinstance(stored, dict) else json.loads(stored)
    assert metadata["tags"]["7"] == "int key"
    assert metadata["tags"]["at"].startswith("2026-01-02")
    assert {key: metadata[key] for key in expected} == expected


# --- the app --------------------------------------------------------------------------------------


@pytest.mark.postgres
@postgresql_only
def test_fifty_turns_with_the_database_cut_for_thirty_all_answer_and_all_are_stored(database_url, proxy, make_app):
    app = make_app(proxy.url_for(database_url), **{"telemetry.flush_interval_ms": 20})
    client = app.test_client()
    ids, timings = [], {"up": [], "cut": []}
    for i in range(50):
        if i == 10:
            proxy.cut()
        if i == 40:
            proxy.restore()
        started = time.perf_counter()
        response = client.post("/api/oracle/chat", json={**BODY, "userId": f"u{i}"})
        timings["cut" if 10 <= i < 40 else "up"].append(time.perf_counter() - started)
        assert response.status_code == 200, response.get_data(as_text=True)
        ids.append(response.get_json()["data"]["turnId"])
    up, cut = statistics.median(timings["up"]), statistics.median(timings["cut"])
    print(f"\nturn wall time median: database up {up * 1000:.1f} ms, cut {cut * 1000:.1f} ms; max cut {max(timings['cut']) * 1000:.1f} ms")
    assert max(timings["cut"]) < 1.0
    assert cut < up * 3 + 0.05
    telemetry = app_state(app).telemetry
    assert telemetry.flush()
    assert wait_for(lambda: telemetry.counts["replayed"] == telemetry.counts["spilled"] > 0, timeout=10)
    assert sorted(stored_ids(database_url)) == sorted(ids)
    assert telemetry.counts["dropped"] == 0 and telemetry.journal.pending() == 0

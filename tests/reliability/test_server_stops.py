"""A real gunicorn server (two gevent workers) stopped under load: SIGTERM drains
(in-flight requests finish, buffered telemetry is written, or spilled if the
database is away and replayed by the next server), and a worker killed with
SIGKILL loses at most the telemetry rows it still held in memory. PostgreSQL
sits behind a TCP proxy the tests cut."""

from __future__ import annotations

import os
import signal
import time

import pytest
from polling import wait_for
from tcp_proxy import postgresql_only

from .support import (
    Counts,
    Load,
    answered,
    journals,
    journals_empty,
    rate_turns,
    rated_turn_ids,
    rows_written_by,
    send_turns,
    server,
    stored_ids,
    unanswered,
    worker_pids,
)

pytestmark = [pytest.mark.server, pytest.mark.postgres, postgresql_only]
#: telemetry rows stay in the writers' memory for 2 s (a rating still finds its turn, within 4.5 s)
BUFFERED = {"SPIRALOGIC_TELEMETRY__FLUSH_INTERVAL_MS": "2000", "SPIRALOGIC_TELEMETRY__BATCH_SIZE": "5000"}
#: telemetry rows stay in the writers' memory until they stop
HELD = {"SPIRALOGIC_TELEMETRY__FLUSH_INTERVAL_MS": "60000", "SPIRALOGIC_TELEMETRY__BATCH_SIZE": "5000"}
#: turns that take ~200 ms, so that some are in flight when the signal comes
SLOW_TURNS = {"SPIRALOGIC_GENERATION__PROVIDER": "simulated", "SPIRALOGIC_PLUGINS__SIMULATED__LATENCY_P50_MS": "200"}


def test_server_sigterm_under_load_drains_and_loses_nothing(database_url, proxy, tmp_path, report):
    with server(tmp_path, proxy.url_for(database_url), **BUFFERED, **SLOW_TURNS) as live:
        with Load(live.url) as load:
            time.sleep(4)
            in_memory = len(answered(load.of("turn"))) - len(stored_ids(database_url))
            signalled = time.monotonic()
            live.process.terminate()
            live.process.wait(timeout=30)
            stopped = time.monotonic() - signalled
    sent = load.of("turn") + load.of("rating")
    drained = [request for request in sent if request.started < signalled < request.ended and request.answered]
    refused = [request for request in sent if request.status == 0]  # connection refused, or reset in the backlog
    turns = Counts.of("turn", sent, stored_ids(database_url), f"{in_memory} rows in memory at SIGTERM")
    ratings = Counts.of("rating", sent, rated_turn_ids(database_url))
    detail = f"{len(drained)} requests in flight at SIGTERM finished, {len(refused)} sent after it not taken; stopped in {stopped:.1f} s"
    report(f"SIGTERM under load ({detail})", turns, ratings)
    assert in_memory > 0 and drained  # the drain had rows and requests to finish
    assert not unanswered(request for request in sent if request.started < signalled)  # all sent before it are answered
    assert {status for status, _ in unanswered(sent)} <= {0}  # after it, no answer (refused, or reset in the backlog), never an error
    assert turns.lost == 0 and ratings.lost == 0 and turns.stored == turns.answered and ratings.stored == ratings.answered


def test_server_stopped_during_a_blip_spills_and_the_restarted_server_replays_unprompted(database_url, proxy, tmp_path, report):
    url = proxy.url_for(database_url)
    with server(tmp_path, url, **HELD) as live:
        sent = send_turns(live.url, 20)
        proxy.cut()
        sent += rate_turns(live.url, sent)  # queued: the database is away
        live.stop()  # close() finds the database gone: spill, not loss
    spilled = {name: journal.pending() for name, journal in journals(tmp_path).items()}
    proxy.restore()
    with server(tmp_path, url):  # no request: start-up replay only
        replayed = wait_for(lambda: len(rated_turn_ids(database_url)) == 20 and journals_empty(tmp_path), timeout=15, every=0.2)
    turns = Counts.of("turn", sent, stored_ids(database_url), f"{spilled['telemetry']} spilled at SIGTERM")
    ratings = Counts.of("rating", sent, rated_turn_ids(database_url), f"{spilled['feedback']} queued, replayed after the restart")
    report("stopped during a blip, restarted", turns, ratings)
    assert turns.answered == 20 and spilled == {"telemetry": 20, "feedback": 20}
    assert {request.status for request in sent if request.kind == "rating"} == {202}
    assert replayed and sorted(stored_ids(database_url)) == sorted(answered(sent[:20]))
    assert turns.lost == 0 and ratings.lost == 0 and ratings.stored == 20


def test_server_a_killed_worker_loses_at_most_its_rows_in_flight(database_url, proxy, tmp_path, report):
    telemetry, feedback = journals(tmp_path).values()
    with server(tmp_path, proxy.url_for(database_url)) as live:
        master = live.process.pid
        sent = send_turns(live.url, 10)
        proxy.cut()
        sent += send_turns(live.url, 30)
        sent += rate_turns(live.url, sent)  # queued on disk by both workers
        time.sleep(1.0)  # flush interval 200 ms: by now every row so far is spilled
        spilled_by = {pid: rows_written_by(telemetry, pid) for pid in worker_pids(master)}
        victim = max(spilled_by, key=spilled_by.get)
        victim_rows, victim_ratings = spilled_by[victim], rows_written_by(feedback, victim)
        burst = send_turns(live.url, 10)  # the only rows that can be in a worker's memory now
        os.kill(victim, signal.SIGKILL)
        after_kill = send_turns(live.url, 20)  # still cut: the survivor answers, gunicorn respawns
        assert wait_for(lambda: len(worker_pids(master) - {victim}) == 2, timeout=15), "worker not respawned"
        proxy.restore()
        # No traffic: the survivor's timer or the new worker's start-up replay takes the dead worker's files.
        assert wait_for(lambda: journals_empty(tmp_path), timeout=15, every=0.2), "journals not replayed"
        victim_files_left = [path for journal in (telemetry, feedback) for path in journal.directory.glob(f"{victim}-*")]
        sent += burst + after_kill + send_turns(live.url, 10)
        live.stop()
    stored = set(stored_ids(database_url))
    bound = len(answered(burst))
    turns = Counts.of("turn", sent, stored, f"bound {bound}: the burst before the kill; victim had spilled {victim_rows} rows")
    ratings = Counts.of("rating", sent, rated_turn_ids(database_url), f"queued before the kill, {victim_ratings} by the victim")
    report("kill -9 of a worker", turns, ratings)
    assert not unanswered(sent)  # the server kept answering
    assert not victim_files_left and victim_rows > 0
    assert stored <= set(answered(sent))
    assert set(answered(sent)) - stored <= set(answered(burst))  # only rows still in the dead worker's memory can be gone
    assert turns.lost <= bound and ratings.lost == 0 and ratings.answered == 40

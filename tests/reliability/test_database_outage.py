"""The database goes away under a real gunicorn server (two gevent workers):
PostgreSQL sits behind a TCP proxy that is cut (every connection dropped, new
ones refused) and restored; the database server itself is never touched. Every
request is answered meanwhile, and once the database is back every answered
turn has its row and every accepted rating is stored."""

from __future__ import annotations

import statistics
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
    rated_turn_ids,
    send_turns,
    server,
    stored_ids,
    unanswered,
)

pytestmark = [pytest.mark.server, pytest.mark.postgres, postgresql_only]
OUTAGE_S = 30


def test_server_a_three_second_blip_loses_no_turn(database_url, proxy, tmp_path, report):
    with server(tmp_path, proxy.url_for(database_url)) as live:
        before = send_turns(live.url, 20)
        proxy.cut()
        during = []
        started = time.monotonic()
        while time.monotonic() - started < 3:
            during += send_turns(live.url, 8)
        proxy.restore()
        after = send_turns(live.url, 20)
        live.stop()
    sent = before + during + after
    up = statistics.median(request.seconds for request in before + after)
    cut = sorted(request.seconds for request in during)
    turns = Counts.of(
        "turn",
        sent,
        stored_ids(database_url),
        f"{len(during)} while cut; turn time p50 {up * 1000:.0f} ms up, {statistics.median(cut) * 1000:.0f} ms cut, "
        f"max {cut[-1] * 1000:.0f} ms cut",
    )
    report("blip 3 s", turns)
    assert not unanswered(sent), f"not answered (status, error): {unanswered(sent)}"
    assert cut[-1] < 2.0 and statistics.median(cut) < up * 3 + 0.05
    assert turns.lost == 0 and sorted(stored_ids(database_url)) == sorted(answered(sent))


def test_server_a_thirty_second_outage_under_load_loses_no_turn_and_no_rating(database_url, proxy, tmp_path, report):
    with server(tmp_path, proxy.url_for(database_url)) as live:
        with Load(live.url) as load:
            load.phase = "up"
            time.sleep(3)
            proxy.cut()
            load.phase, cut_at = "cut", time.monotonic()
            time.sleep(OUTAGE_S)
            load.phase, restored_at = "back", time.monotonic()
            proxy.restore()
            time.sleep(5)
        sent = load.of("turn") + load.of("rating")
        # Everything spilled or queued reaches the database without further traffic.
        settling = time.monotonic()
        settled = wait_for(lambda: journals_empty(tmp_path), timeout=30, every=0.2)
        settle_s = time.monotonic() - settling
        live.stop()
    rejected = sum(journal.rejected() for journal in journals(tmp_path).values())
    queued = [request for request in load.of("rating") if request.status == 202]
    cut = sorted(request.seconds for request in load.of("turn", "cut"))
    turns = Counts.of("turn", sent, stored_ids(database_url), f"{len(cut)} while cut, the slowest {cut[-1]:.2f} s")
    ratings = Counts.of(
        "rating", sent, rated_turn_ids(database_url), f"{len(queued)} queued, {rejected} set aside; journals empty {settle_s:.1f} s after"
    )
    report(f"outage {OUTAGE_S} s under load", turns, ratings)
    assert not unanswered(sent), f"not answered (status, error): {unanswered(sent)}"
    assert settled, "journals not replayed"
    assert turns.answered == turns.sent == turns.stored and turns.lost == 0
    assert ratings.answered == ratings.sent == ratings.stored and ratings.lost == 0 and rejected == 0
    # The outage was real, and seen: every rating sent and answered within it was queued.
    assert {request.status for request in load.of("rating") if cut_at < request.started and request.ended < restored_at} == {202}

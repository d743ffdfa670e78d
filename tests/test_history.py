"""The history a turn's guardrails read, and each worker's short memo of it, on real databases."""

from __future__ import annotations

import psycopg
import pytest
import sqlalchemy as sa
from tcp_proxy import postgresql_only
from test_shadow_work import challenge_of, walk
from test_turn_metrics import received
from test_worldview import say, stored_metadata

from spiralogic.history import HistoryMemo
from spiralogic.state import app_state

PRAGMATIC = "What are the steps to change careers?"
NO_SIGNAL = "What should I do next?"


def history_reads(engine) -> list[str]:
    """Every recent-turns query the driver sends from now on.

    Traced at the driver: the read runs on its cursor, below SQLAlchemy's events.
    """
    reads: list[str] = []

    def seen(statement: str) -> None:
        if "feedback.accepted_challenge" in statement:
            reads.append(statement)

    class TracedCursor(psycopg.Cursor):
        def execute(self, query, params=None, **kwargs):
            seen(str(query))
            return super().execute(query, params, **kwargs)

    @sa.event.listens_for(engine, "checkout")
    def trace(dbapi_connection, record, proxy):
        if engine.dialect.name == "sqlite":
            dbapi_connection.set_trace_callback(seen)
        else:
            dbapi_connection.cursor_factory = TracedCursor

    return reads


def worldview_of(app, turn_id: str) -> tuple[str, str]:
    metadata = stored_metadata(app, turn_id)
    return metadata["worldview"], metadata["guardrails"]["worldview_signal"]


def test_turns_in_quick_succession_read_once_and_see_the_turns_before_them(make_app, database_url):
    app = make_app(database_url, **{"history.memo_ms": 60_000})
    reads = history_reads(app_state(app).engine)
    say(app, "quick", PRAGMATIC)
    # No flush: the first turn's row may not be stored yet, but this worker answered it.
    second = say(app, "quick", NO_SIGNAL)
    third = say(app, "quick", NO_SIGNAL)
    assert len(reads) == 1
    assert app_state(app).history.counts == {"hits": 2, "reads": 1, "unreadable": 0}
    assert worldview_of(app, second["turnId"]) == worldview_of(app, third["turnId"]) == ("pragmatic", "history")


def test_with_the_memo_off_every_turn_reads(make_app):
    app = make_app(**{"history.memo_ms": 0})
    reads = history_reads(app_state(app).engine)
    for _ in range(3):
        say(app, "every-time", NO_SIGNAL)
    assert len(reads) == 3
    assert app_state(app).history.counts == {"hits": 0, "reads": 3, "unreadable": 0}


def test_an_entry_expires_and_then_shows_what_another_worker_recorded(make_app, database_url):
    app = make_app(database_url)  # the other worker
    now = [0.0]
    memo = HistoryMemo(app_state(app).engine, fresh_s=0.2, users=10, timer=lambda: now[0])
    assert memo.load("shared").worldviews == []
    say(app, "shared", PRAGMATIC)
    app_state(app).telemetry.flush()
    assert memo.load("shared").worldviews == []  # still fresh: what this worker read
    now[0] += 0.25
    assert memo.load("shared").worldviews == ["pragmatic"]


def test_a_rating_drops_the_users_entry_so_consent_follows_it_at_once(make_app):
    app = make_app(shadow_challenge_intensity="high", **{"history.memo_ms": 60_000})
    # The negative rating must step the next challenge down, although the memo is fresh for a minute.
    assert walk(app, "turned", [5, 5, -1]) == ["low", "med", "high", "med"]


@pytest.mark.postgres
@postgresql_only
def test_an_unreadable_history_is_not_kept(make_app, database_url, proxy):
    app = make_app(proxy.url_for(database_url))
    memo = HistoryMemo(app_state(app).engine, fresh_s=60, users=10)
    proxy.cut()
    assert memo.load("blip").known is False
    proxy.restore()
    assert memo.load("blip").known is True  # read again, not the failure remembered
    assert memo.counts == {"hits": 0, "reads": 1, "unreadable": 1}


def test_each_load_is_counted_in_statsd_and_the_admin_status(make_app, collector):
    statsd = {"statsd.host": "127.0.0.1", "statsd.port": collector.getsockname()[1], "statsd.prefix": "sl"}
    app = make_app(admin_token="t" * 32, **{"history.memo_ms": 60_000, **statsd})
    for _ in range(2):
        say(app, "counted", NO_SIGNAL)
    assert sorted(line for line in received(collector) if line.startswith("sl.history.")) == ["sl.history.hits:1|c", "sl.history.reads:1|c"]
    status = app.test_client().get("/admin/status", headers={"Authorization": "Bearer " + "t" * 32}).get_json()
    assert status["history"] == {"hits": 1, "reads": 1, "unreadable": 0}


@pytest.mark.parametrize("accepted", [False, True])
def test_whether_a_challenge_was_taken_up_reads_back_as_a_boolean(make_app, database_url, accepted):
    app = make_app(database_url, **{"history.memo_ms": 0})
    client = app.test_client()
    challenge = challenge_of(client, "taker")
    app_state(app).telemetry.flush()
    rating = {"userId": "taker", "turnId": challenge["turnId"], "rating": 4, "acceptedChallenge": accepted}
    assert client.post("/api/oracle/feedback", json=rating).status_code == 201
    # Not merely falsy: consent steps down only when it `is False` (SQLite stores 0 or 1).
    assert app_state(app).history.load("taker").last_challenge_accepted is accepted

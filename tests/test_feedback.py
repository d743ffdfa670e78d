"""POST /api/oracle/feedback: ratings of a user's own turns, stored once per turn.

Runs on SQLite and PostgreSQL. The outages are real: PostgreSQL sits behind a
TCP proxy that is cut; SQLite is held by another connection's write lock. A
rating sent during one is queued on disk (202) and replayed, with the same
checks, once the database is back.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

import jsonschema
import pytest
import sqlalchemy as sa
from polling import wait_for
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy, postgresql_only

from spiralogic.feedback import rating_scale, sentiment
from spiralogic.journal import CLAIM_MARK
from spiralogic.rating_store import new_rating
from spiralogic.schemas import FeedbackRequest
from spiralogic.state import app_state
from spiralogic.tables import Feedback
from spiralogic.telemetry import as_row
from spiralogic.turn import TurnRecord

FEEDBACK = "/api/oracle/feedback"
CHAT_BODY = {"userId": "rater", "text": "Help me find clarity", "element": "air"}
SPIRALOGIC = {"x-experiment-spiralogic": "on"}


def chat(client, headers=None, **body) -> dict:
    response = client.post("/api/oracle/chat", json={**CHAT_BODY, **body}, headers=headers or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def recorded_turn(app, headers=None, **body) -> dict:
    """A chat turn whose telemetry row is already written."""
    data = chat(app.test_client(), headers, **body)
    app_state(app).telemetry.flush()
    return data


def rate(client, turn_id: str, rating, user: str = CHAT_BODY["userId"], **extra):
    return client.post(FEEDBACK, json={"userId": user, "turnId": turn_id, "rating": rating, **extra})


def feedback_rows(app) -> list:
    table = Feedback.__table__
    with app_state(app).engine.connect() as conn:
        return conn.execute(sa.select(table)).all()


def assert_error(response, status: int, code: str, field: str | None = None) -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == (code, field)
    assert error["message"]


# -- Storing -----------------------------------------------------------------


def test_a_rating_is_stored_with_its_sentiment(make_app, database_url):
    app = make_app(database_url)
    turn = recorded_turn(app)
    response = rate(app.test_client(), turn["turnId"], 4)
    assert response.status_code == 201
    data = response.get_json()["data"]
    assert data["turnId"] == turn["turnId"]
    assert data["sentiment"] == 1
    (row,) = feedback_rows(app)
    assert str(row.id) == data["feedbackId"]
    assert (str(row.turn_id), row.user_id, row.rating, row.sentiment, row.accepted_challenge) == (
        turn["turnId"],
        CHAT_BODY["userId"],
        4,
        1,
        None,
    )


def test_a_second_rating_replaces_the_first(make_app, database_url):
    app = make_app(database_url)
    client = app.test_client()
    turn = recorded_turn(app, SPIRALOGIC)
    assert turn["challenge"] is not None
    first = rate(client, turn["turnId"], 5, acceptedChallenge=True).get_json()["data"]
    second = rate(client, turn["turnId"], 2)
    assert second.status_code == 201
    assert second.get_json()["data"] == {"feedbackId": first["feedbackId"], "turnId": turn["turnId"], "sentiment": -1}
    (row,) = feedback_rows(app)
    assert (row.rating, row.sentiment, row.accepted_challenge) == (2, -1, None)


@pytest.mark.parametrize(
    "rating, scale, sentiment",
    [(-1, None, -1), (0, None, 0), (1, "thumbs", 1), (1, "stars", -1), (2, None, -1), (3, None, 0), (4, None, 1), (5, "stars", 1)],
)
def test_ratings_are_normalised_to_a_sentiment(client, app, rating, scale, sentiment):
    turn = recorded_turn(app)
    extra = {"scale": scale} if scale else {}
    response = rate(client, turn["turnId"], rating, **extra)
    assert response.status_code == 201
    assert response.get_json()["data"]["sentiment"] == sentiment
    (row,) = feedback_rows(app)
    assert (row.rating, row.sentiment) == (rating, sentiment)


def test_challenge_acceptance_is_stored_for_a_challenged_turn(make_app, database_url):
    app = make_app(database_url)
    turn = recorded_turn(app, SPIRALOGIC)
    assert rate(app.test_client(), turn["turnId"], 0, acceptedChallenge=False).status_code == 201
    (row,) = feedback_rows(app)
    assert row.accepted_challenge is False


def test_a_turn_rated_at_once_is_found_although_its_row_is_written_later(make_app, database_url):
    app = make_app(database_url)
    client = app.test_client()
    turn = chat(client)  # no flush: the row is still on its way
    assert rate(client, turn["turnId"], 3).status_code == 201


# -- Refusals ----------------------------------------------------------------


def test_an_unknown_turn_is_404(make_app, database_url):
    app = make_app(database_url)
    recorded_turn(app)
    assert_error(rate(app.test_client(), str(uuid.uuid4()), 4), 404, "turn_not_found", "turnId")
    assert feedback_rows(app) == []


def test_another_users_turn_is_404(make_app, database_url):
    app = make_app(database_url)
    turn = recorded_turn(app)
    assert_error(rate(app.test_client(), turn["turnId"], 4, user="someone-else"), 404, "turn_not_found", "turnId")
    assert feedback_rows(app) == []


def test_accepting_a_challenge_that_was_never_offered_is_refused(app, client):
    turn = recorded_turn(app)  # baseline: no challenge
    assert turn["challenge"] is None
    assert_error(rate(client, turn["turnId"], 4, acceptedChallenge=True), 422, "no_challenge", "acceptedChallenge")


VALID_ID = str(uuid.uuid4())


@pytest.mark.parametrize(
    "body, status, code, field",
    [
        pytest.param({"turnId": VALID_ID, "rating": 4}, 422, "missing_field", "userId", id="no-userId"),
        pytest.param({"userId": "rater", "rating": 4}, 422, "missing_field", "turnId", id="no-turnId"),
        pytest.param({"userId": "rater", "turnId": VALID_ID}, 422, "missing_field", "rating", id="no-rating"),
        pytest.param({"userId": "a b", "turnId": VALID_ID, "rating": 4}, 422, "invalid_value", "userId", id="userId-space"),
        pytest.param({"userId": 7, "turnId": VALID_ID, "rating": 4}, 400, "invalid_type", "userId", id="userId-number"),
        pytest.param({"userId": "rater", "turnId": "turn-1", "rating": 4}, 422, "invalid_value", "turnId", id="turnId-not-uuid"),
        pytest.param({"userId": "rater", "turnId": 5, "rating": 4}, 400, "invalid_type", "turnId", id="turnId-number"),
        pytest.param({"userId": "rater", "turnId": VALID_ID, "rating": "4"}, 400, "invalid_type", "rating", id="rating-string"),
        pytest.param({"userId": "rater", "turnId": VALID_ID, "rating": True}, 400, "invalid_type", "rating", id="rating-bool"),
        pytest.param({"userId": "rater", "turnId": VALID_ID, "rating": 4.5}, 400, "invalid_type", "rating", id="rating-float"),
        pytest.param({"userId": "rater", "turnId": VALID_ID, "rating": 6}, 422, "invalid_value", "rating", id="rating-6"),
        pytest.param({"userId": "rater", "turnId": VALID_ID, "rating": -2}, 422, "invalid_value", "rating", id="rating--2"),
        pytest.param({"userId": "rater", "turnId": VALID_ID, "rating": 1}, 422, "missing_field", "scale", id="rating-1-no-scale"),
        pytest.param(
            {"userId": "rater", "turnId": VALID_ID, "rating": 4, "scale": "thumbs"}, 422, "invalid_value", "rating", id="4-thumbs"
        ),
        pytest.param(
            {"userId": "rater", "turnId": VALID_ID, "rating": 0, "scale": "stars"}, 422, "invalid_value", "rating", id="0-stars"
        ),
        pytest.param({"userId": "rater", "turnId": VALID_ID, "rating": 4, "scale": "ten"}, 422, "invalid_value", "scale", id="scale"),
        pytest.param(
            {"userId": "rater", "turnId": VALID_ID, "rating": 4, "acceptedChallenge": "yes"},
            400,
            "invalid_type",
            "acceptedChallenge",
            id="accepted-string",
        ),
        pytest.param([1, 2], 400, "invalid_type", None, id="not-an-object"),
    ],
)
def test_invalid_bodies_get_json_errors_with_stable_codes(client, body, status, code, field):
    assert_error(client.post(FEEDBACK, json=body), status, code, field)


def test_malformed_and_non_json_bodies_are_refused(client):
    assert_error(client.post(FEEDBACK, data=b"{", content_type="application/json"), 400, "malformed_json")
    assert_error(client.post(FEEDBACK, data=b"{}", content_type="text/plain"), 415, "unsupported_media_type")
    assert_error(client.get(FEEDBACK), 405, "method_not_allowed")


# -- Database outage ---------------------------------------------------------


@contextmanager
def sqlite_write_lock(database_url: str):
    """Another connection holds the database's write lock (a long migration, a stuck writer)."""
    conn = sqlite3.connect(make_url(database_url).database, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


@contextmanager
def network_cut(proxy: TcpProxy):
    proxy.cut()
    try:
        yield
    finally:
        proxy.restore()


@pytest.fixture
def app_and_outage(make_app, database_url):
    """An app on ``database_url``, and a context manager during which its database fails it."""
    if database_url.startswith("sqlite"):
        yield make_app(database_url), lambda: sqlite_write_lock(database_url)
        return
    with TcpProxy.before(database_url) as proxy:
        yield make_app(proxy.url_for(database_url)), lambda: network_cut(proxy)


def test_during_an_outage_a_rating_is_queued_and_stored_once_the_database_is_back(app_and_outage):
    app, outage = app_and_outage
    client = app.test_client()
    ratings = app_state(app).ratings
    turn = recorded_turn(app, SPIRALOGIC)
    with outage():
        response = rate(client, turn["turnId"], 5, acceptedChallenge=True)
        assert response.status_code == 202, response.get_data(as_text=True)
        queued = response.get_json()["data"]
        assert {key: queued[key] for key in ("turnId", "sentiment", "status")} == {"turnId": turn["turnId"], "sentiment": 1, "status": "queued"}
        assert ratings.journal.pending() == 1
    assert wait_for(lambda: feedback_rows(app), timeout=10), "the queued rating was not replayed"
    (row,) = feedback_rows(app)
    assert (str(row.id), str(row.turn_id), row.rating, row.sentiment, row.accepted_challenge) == (queued["feedbackId"], turn["turnId"], 5, 1, True)
    assert ratings.journal.pending() == 0
    assert {key: ratings.counts[key] for key in ("queued", "replayed", "rejected")} == {"queued": 1, "replayed": 1, "rejected": 0}


@pytest.mark.postgres
@postgresql_only
def test_an_outage_with_an_unwritable_journal_answers_503(app_and_outage):
    app, outage = app_and_outage
    ratings = app_state(app).ratings
    turn = recorded_turn(app)
    ratings.journal.directory.parent.mkdir(parents=True, exist_ok=True)
    ratings.journal.directory.write_text("a file where the journal's directory should be")
    with outage():
        response = rate(app.test_client(), turn["turnId"], 4)
    assert_error(response, 503, "unavailable")
    assert int(response.headers["Retry-After"]) > 0
    assert ratings.counts["unavailable"] == 1 and feedback_rows(app) == []


# -- The queue's replay ------------------------------------------------------


@contextmanager
def turn_row_being_replayed(app, user: str = CHAT_BODY["userId"]):
    """A turn whose row sits in the telemetry journal, claimed by another (live) process: the
    database answers but the row is not in it yet. Yields the turn id; on exit the claimant
    dies and the writer replays the row."""
    journal = app_state(app).telemetry.journal
    record = TurnRecord(
        id=str(uuid.uuid4()),
        created_at=datetime.now(timezone.utc),
        user_id=user,
        session_id=None,
        orchestrator="baseline",
        orchestrator_mode="full",
        element="air",
        metadata={},
        resonance={},
    )
    journal.append([as_row(record)])
    [path] = journal.directory.glob("*.jsonl")
    claimant = subprocess.Popen(["sleep", "60"])
    try:
        path.rename(path.with_name(f"{path.name}{CLAIM_MARK}{claimant.pid}"))
        yield record.id
    finally:
        claimant.kill()
        claimant.wait()


def queue_directly(app, turn_id: str, rating: int = 4, user: str = CHAT_BODY["userId"], **extra) -> dict:
    """Journal a rating as the endpoint does during an outage, with the writer stopped (the test replays)."""
    app_state(app).telemetry.close()
    body = FeedbackRequest(userId=user, turnId=turn_id, rating=rating, **extra)
    row = new_rating(body, sentiment(rating, rating_scale(rating, body.scale)))
    app_state(app).ratings.journal.append([row])
    return row


def test_a_turn_whose_row_still_waits_in_the_telemetry_journal_is_rated_after_both_replays(make_app, database_url):
    app = make_app(database_url)
    client = app.test_client()
    chat(client)  # the writer is running
    with turn_row_being_replayed(app) as turn_id:
        response = rate(client, turn_id, 4)
        assert response.status_code == 202, response.get_data(as_text=True)  # not 404: the row may be in the journal
        assert response.get_json()["data"]["status"] == "queued"
        time.sleep(1.5)  # the rating is tried and waits: its turn is not in
        assert feedback_rows(app) == []
    assert wait_for(lambda: feedback_rows(app), timeout=10), "the rating did not follow its turn row"
    (row,) = feedback_rows(app)
    assert (str(row.turn_id), row.rating) == (turn_id, 4)
    assert app_state(app).ratings.counts["rejected"] == 0


def test_a_queued_rating_that_breaks_a_rule_is_set_aside_and_counted(make_app, database_url):
    app = make_app(database_url, **{"feedback.turn_wait_s": 0})
    ratings = app_state(app).ratings
    turn = recorded_turn(app)  # baseline: no challenge
    good = queue_directly(app, turn["turnId"], 4)
    queue_directly(app, turn["turnId"], 4, user="someone-else")
    queue_directly(app, str(uuid.uuid4()), 4)
    queue_directly(app, turn["turnId"], 5, acceptedChallenge=True)
    ratings.journal.append([{"id": "a line that is no rating"}])
    assert ratings.replay_journal() == 1  # all five in one batch: the bad ones cannot hold back the good one
    (row,) = feedback_rows(app)
    assert (str(row.id), row.rating) == (good["id"], 4)
    assert ratings.counts["rejected"] == 4 and ratings.journal.pending() == 0
    set_aside = [json.loads(line) for path in (ratings.journal.directory / "rejected").glob("*.jsonl") for line in path.read_text().splitlines()]
    reasons = sorted(row["_rejected"].split(":")[0] for row in set_aside)
    assert reasons == ["'turn_id'", "no_challenge", "turn_not_found", "turn_not_found"]


def test_a_queued_rating_whose_turn_is_missing_waits_turn_wait_s_before_it_is_set_aside(make_app, database_url):
    app = make_app(database_url, **{"feedback.turn_wait_s": 0.5})
    ratings = app_state(app).ratings
    queue_directly(app, str(uuid.uuid4()))
    assert ratings.replay_journal() == 0
    assert ratings.counts["rejected"] == 0 and ratings.journal.pending() == 1 and not ratings.journal.has_pending()
    assert wait_for(ratings.journal.has_pending, timeout=5)  # due again after journal.RETRY_S
    time.sleep(0.5)
    assert ratings.replay_journal() == 0
    assert ratings.counts["rejected"] == 1 and ratings.journal.pending() == 0


def test_a_rating_replayed_late_never_replaces_a_newer_one(make_app, database_url):
    app = make_app(database_url)
    turn = recorded_turn(app)
    older = queue_directly(app, turn["turnId"], 2)
    assert rate(app.test_client(), turn["turnId"], 5).status_code == 201
    assert app_state(app).ratings.replay_journal() == 1
    (row,) = feedback_rows(app)
    assert (row.rating, row.sentiment) == (5, 1) and str(row.id) != older["id"]


def test_queued_ratings_are_replayed_at_start_up(make_app, database_url):
    first = make_app(database_url)
    turn = recorded_turn(first)
    queued = queue_directly(first, turn["turnId"], 3)
    restarted = make_app(database_url)  # the same data directory: the worker's successor; no request
    assert wait_for(lambda: feedback_rows(restarted), timeout=10), "not replayed at start-up"
    assert [str(row.id) for row in feedback_rows(restarted)] == [queued["id"]]
    assert app_state(restarted).ratings.counts["replayed"] == 1


# -- The OpenAPI document ----------------------------------------------------


def test_openapi_documents_the_endpoint_and_its_answers_match(app, client):
    document = client.get("/api/openapi.json").get_json()
    operation = document["paths"][FEEDBACK]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/FeedbackRequest"}
    assert {"201", "202", "400", "404", "413", "415", "422", "503"} <= set(operation["responses"])

    def validator(name):
        return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": document["components"]})

    turn = recorded_turn(app)
    body = {"userId": CHAT_BODY["userId"], "turnId": turn["turnId"], "rating": 5, "scale": "stars"}
    assert validator("FeedbackRequest").is_valid(body)
    assert not validator("FeedbackRequest").is_valid({**body, "rating": 6})
    validator("FeedbackResponse").validate(client.post(FEEDBACK, json=body).get_json())
    validator("ErrorResponse").validate(rate(client, str(uuid.uuid4()), 4).get_json())
    with turn_row_being_replayed(app) as turn_id:
        queued = rate(client, turn_id, 4)
    assert queued.status_code == 202
    validator("FeedbackQueuedResponse").validate(queued.get_json())

"""``POST /api/oracle/feedback``: a user rates one of their turns.

Ratings feed challenge consent (``spiralogic.history`` reads the feedback on
a user's last challenge at their next turn) and the beta phase's satisfaction
and challenge-acceptance figures. One row per turn: rating a turn again
replaces the earlier rating.

A turn's telemetry row is written off the request path, normally within one
telemetry flush interval of the answer, so a client that rates at once can
arrive before the row does. A turn that is not there yet is therefore looked
for again for a short while (see ``row_wait_s``) before the answer is 404
``turn_not_found``. After a database blip a row can take longer (it waits in
the telemetry journal until the database is back); the client may retry.
A database that cannot be reached answers 503 ``unavailable`` (the app's
error handler); the rating is not kept, so the client must retry.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, jsonify
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, Row

from spiralogic import limits
from spiralogic.api import parse_json_body
from spiralogic.errors import ApiError
from spiralogic.schemas import FeedbackRequest
from spiralogic.state import app_state
from spiralogic.tables import ConsciousnessTurnMeta, Feedback

bp = Blueprint("feedback", __name__)
TURNS = ConsciousnessTurnMeta.__table__
FEEDBACK = Feedback.__table__
#: each rating scale's lowest and highest value
SCALES = {"thumbs": (-1, 1), "stars": (1, 5)}
STAR_SENTIMENT = {1: -1, 2: -1, 3: 0, 4: 1, 5: 1}
#: how long to sleep between looks for a turn row still on its way (s)
POLL_S = 0.05
INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


@bp.post("/api/oracle/feedback")
def feedback():
    body = parse_json_body(FeedbackRequest)
    limits.check(body.userId)
    scale = rating_scale(body.rating, body.scale)
    state = app_state()
    turn = await_turn(state.engine, body.turnId, row_wait_s(state.settings.telemetry.flush_interval_ms))
    if turn is None or turn.user_id != body.userId:
        # One answer for "no such turn" and "not yours": ids of other users' turns stay unconfirmed.
        raise ApiError(404, "turn_not_found", f"no turn {body.turnId} of user {body.userId!r}", "turnId")
    if body.acceptedChallenge is not None and not (turn.metadata or {}).get("challenge"):
        raise ApiError(422, "no_challenge", "acceptedChallenge applies only to a turn that offered a challenge", "acceptedChallenge")
    value = sentiment(body.rating, scale)
    feedback_id = store(state.engine, body, value)
    return jsonify({"data": {"feedbackId": str(feedback_id), "turnId": str(body.turnId), "sentiment": value}}), 201


def rating_scale(rating: int, scale: str | None) -> str:
    """The scale ``rating`` is on: the one given, else the only one it fits (1 fits both)."""
    fits = [name for name, (low, high) in SCALES.items() if low <= rating <= high]
    if scale is None and len(fits) > 1:
        raise ApiError(422, "missing_field", "scale is required when rating is 1: a thumbs up, or one star?", "scale")
    chosen = scale or fits[0]
    if chosen not in fits:
        low, high = SCALES[chosen]
        raise ApiError(422, "invalid_value", f"rating: {rating} is not on the {chosen} scale ({low} to {high})", "rating")
    return chosen


def sentiment(rating: int, scale: str) -> int:
    """-1, 0 or 1, whatever the scale: 1-2 stars are negative, 3 neutral, 4-5 positive."""
    return rating if scale == "thumbs" else STAR_SENTIMENT[rating]


def row_wait_s(flush_interval_ms: float) -> float:
    """How long a turn row may still be on its way: the writer waits up to one flush
    interval to fill a batch, may be busy with the previous one, then writes."""
    return 2 * flush_interval_ms / 1000 + 0.5


def await_turn(engine: Engine, turn_id: uuid.UUID, wait_s: float) -> Row | None:
    """The turn's row (user_id, metadata), looking again until ``wait_s`` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        with engine.connect() as conn:
            row = conn.execute(sa.select(TURNS.c.user_id, TURNS.c.metadata).where(TURNS.c.id == turn_id)).first()
        if row is not None or time.monotonic() >= deadline:
            return row
        time.sleep(POLL_S)  # cooperative under gevent: other requests run meanwhile


def store(engine: Engine, body: FeedbackRequest, value: int) -> uuid.UUID:
    """Insert the rating, or replace the turn's earlier one; the row keeps its first id."""
    fields: dict[str, Any] = {
        "sentiment": value,
        "rating": body.rating,
        "accepted_challenge": body.acceptedChallenge,
        "created_at": datetime.now(timezone.utc),
    }
    with engine.begin() as conn:
        insert = INSERT[conn.dialect.name](FEEDBACK).values(id=uuid.uuid4(), user_id=body.userId, turn_id=body.turnId, **fields)
        upsert = insert.on_conflict_do_update(index_elements=[FEEDBACK.c.turn_id], set_={name: insert.excluded[name] for name in fields})
        return conn.execute(upsert.returning(FEEDBACK.c.id)).scalar_one()

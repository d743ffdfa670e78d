"""``POST /api/oracle/feedback``: a user rates one of their turns.

Ratings feed challenge consent (``spiralogic.history`` reads the feedback on
a user's last challenge at their next turn) and the beta phase's satisfaction
and challenge-acceptance figures. One row per turn: rating a turn again
replaces the earlier rating (unless the earlier one is newer: a queued rating
replayed late never undoes a later one).

A turn's telemetry row is written off the request path, normally within one
telemetry flush interval of the answer, so a client that rates at once can
arrive before the row does. A turn that is not there yet is therefore looked
for again for a short while (see ``row_wait_s``) before the answer is 404
``turn_not_found``.

A rating is not lost to a database outage: when the database cannot be
reached, or the turn is not found while its row may still wait in the
telemetry journal, the rating is written to a journal on disk and the answer
is 202 with ``"status": "queued"``; it is stored when the database is back,
after the same checks (``spiralogic.rating_store``). Only when that journal
cannot be written either is the answer 503 ``unavailable``.
"""

from __future__ import annotations

from flask import Blueprint, jsonify

from spiralogic import limits
from spiralogic.api import parse_json_body
from spiralogic.errors import ApiError
from spiralogic.rating_store import new_rating
from spiralogic.schemas import FeedbackRequest
from spiralogic.state import app_state

bp = Blueprint("feedback", __name__)
#: each rating scale's lowest and highest value
SCALES = {"thumbs": (-1, 1), "stars": (1, 5)}
STAR_SENTIMENT = {1: -1, 2: -1, 3: 0, 4: 1, 5: 1}


@bp.post("/api/oracle/feedback")
def feedback():
    body = parse_json_body(FeedbackRequest)
    limits.check(body.userId)
    scale = rating_scale(body.rating, body.scale)
    state = app_state()
    value = sentiment(body.rating, scale)
    feedback_id, queued = state.ratings.submit(new_rating(body, value), row_wait_s(state.settings.telemetry.flush_interval_ms))
    state.history.forget(body.userId)
    data = {"feedbackId": feedback_id, "turnId": str(body.turnId), "sentiment": value}
    if queued:
        return jsonify({"data": {**data, "status": "queued"}}), 202
    return jsonify({"data": data}), 201


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


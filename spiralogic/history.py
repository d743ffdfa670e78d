"""What the service remembers of a user, loaded once per turn for the guardrails.

Worldview detection reads the user's recent framing; challenge consent reads
the intensity of their last challenge and the feedback they gave on it. Both
come from the turn rows joined with the feedback table, in one indexed query; if
the database cannot answer, the turn gets an empty history, which guardrails
treat cautiously (no escalation).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from spiralogic.tables import ConsciousnessTurnMeta, Feedback

log = logging.getLogger(__name__)
TURNS = ConsciousnessTurnMeta.__table__
FEEDBACK = Feedback.__table__
RECENT_TURNS = 20
# Built once: this runs on every turn, and a constant statement keeps SQLAlchemy's
# cache key memoized. Only the two metadata fields are read, extracted by the database.
RECENT = (
    sa.select(
        TURNS.c.metadata["worldview"].as_string().label("worldview"),
        TURNS.c.metadata["challenge"].as_string().label("challenge"),
        FEEDBACK.c.sentiment,
        FEEDBACK.c.accepted_challenge,
    )
    .select_from(TURNS.outerjoin(FEEDBACK, FEEDBACK.c.turn_id == TURNS.c.id))
    .where(TURNS.c.user_id == sa.bindparam("user_id"))
    .order_by(TURNS.c.created_at.desc())
    .limit(RECENT_TURNS)
)


@dataclass(frozen=True)
class UserHistory:
    """The user's recent turns, most recent first."""

    #: worldview recorded on each recent turn that had one
    worldviews: list[str] = field(default_factory=list)
    #: intensity (low|med|high) of the most recent challenge offered, if any
    last_challenge: str | None = None
    #: the user's sentiment (-1, 0, 1) on that challenge's turn, if they gave feedback
    last_challenge_sentiment: int | None = None
    #: whether they said they took the challenge up, if they said
    last_challenge_accepted: bool | None = None
    #: False when the history could not be read
    known: bool = True


def load_history(engine: Engine, user_id: str) -> UserHistory:
    try:
        with engine.connect() as conn:
            rows = conn.execute(RECENT, {"user_id": user_id}).all()
    except sa.exc.SQLAlchemyError as exc:
        log.warning("history of a user unreadable (%s); treating it as unknown", type(exc).__name__)
        return UserHistory(known=False)
    worldviews = [row.worldview for row in rows if row.worldview]
    challenged = next((row for row in rows if row.challenge), None)
    if challenged is None:
        return UserHistory(worldviews=worldviews)
    return UserHistory(
        worldviews=worldviews,
        last_challenge=challenged.challenge,
        last_challenge_sentiment=challenged.sentiment,
        last_challenge_accepted=challenged.accepted_challenge,
    )

"""What the service remembers of a user, loaded once per turn for the guardrails.

Worldview detection reads the user's recent framing; challenge consent reads
the intensity of their last challenge and the feedback they gave on it. Both
come from the turn rows joined with the feedback table, in one indexed query; if
the database cannot answer, the turn gets an empty history, which guardrails
treat cautiously (no escalation).

Each worker keeps what it read for a moment (:class:`HistoryMemo`), so a user's
turns in quick succession cost one query, not one each.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, NamedTuple, Sequence

import sqlalchemy as sa
from cachetools import TTLCache
from sqlalchemy.engine import Dialect, Engine

from spiralogic.driver_statement import DriverStatement
from spiralogic.metrics import Metrics, NoMetrics
from spiralogic.tables import ConsciousnessTurnMeta, Feedback

if TYPE_CHECKING:
    from spiralogic.turn import TurnRecord  # turn.py imports this module

log = logging.getLogger(__name__)
TURNS = ConsciousnessTurnMeta.__table__
FEEDBACK = Feedback.__table__
RECENT_TURNS = 20
# Runs on every turn: compiled once per dialect and run on the driver's cursor (see
# _recent_on). Only the two metadata fields are read, extracted by the database.
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


class RecentTurn(NamedTuple):
    """One row of the recent-turns query."""

    worldview: str | None
    challenge: str | None
    sentiment: int | None
    accepted_challenge: bool | None


@functools.lru_cache(maxsize=8)
def _recent_on(dialect: Dialect) -> DriverStatement:
    return DriverStatement(RECENT, dialect)


def read_recent(engine: Engine, user_id: str) -> list[RecentTurn] | None:
    """The user's last turns, most recent first; None when the database cannot answer."""
    try:
        with engine.connect() as conn:
            return [RecentTurn(*row) for row in _recent_on(engine.dialect).rows(conn, user_id=user_id)]
    except sa.exc.SQLAlchemyError as exc:
        log.warning("history of a user unreadable (%s); treating it as unknown", type(exc).__name__)
        return None


def history_of(recent: Sequence[RecentTurn] | None) -> UserHistory:
    if recent is None:
        return UserHistory(known=False)
    worldviews = [turn.worldview for turn in recent if turn.worldview]
    challenged = next((turn for turn in recent if turn.challenge), None)
    if challenged is None:
        return UserHistory(worldviews=worldviews)
    return UserHistory(
        worldviews=worldviews,
        last_challenge=challenged.challenge,
        last_challenge_sentiment=challenged.sentiment,
        last_challenge_accepted=challenged.accepted_challenge,
    )


class HistoryMemo:
    """One worker's recent reads of its users' histories, kept ``fresh_s`` seconds.

    The read is the costliest step of a turn. A user who sends turns in quick
    succession gets one read, and on top of it every turn this worker has
    answered since, added as it is recorded, so the worker never misses its own
    turns. What another worker answered, or a rating it took, shows once the
    entry expires. That is the staleness the database itself has: a turn's row
    reaches it only within a telemetry flush interval, so with ``fresh_s`` no
    longer than that interval a turn sees what it would have seen anyway.
    A rating taken here drops the user's entry at once.
    """

    def __init__(
        self, engine: Engine, *, fresh_s: float, users: int, metrics: Metrics | None = None, timer: Callable[[], float] = time.monotonic
    ):
        self.engine = engine
        self.metrics = metrics or NoMetrics()
        self._recent: TTLCache[str, list[RecentTurn]] | None = (
            TTLCache(maxsize=users, ttl=fresh_s, timer=timer) if fresh_s > 0 else None
        )
        self._lock = threading.Lock()  # cachetools' caches are not thread-safe
        #: this worker's loads: from the memo, read from the database, or unreadable
        self.counts = {"hits": 0, "reads": 0, "unreadable": 0}

    def load(self, user_id: str) -> UserHistory:
        recent = self._kept(user_id)
        if recent is not None:
            self._count("hits")
            return history_of(recent)
        recent = read_recent(self.engine, user_id)
        if recent is None:
            self._count("unreadable")  # and not kept: the next turn tries the database again
            return history_of(None)
        self._count("reads")
        if self._recent is not None:
            with self._lock:
                self._recent[user_id] = recent
        return history_of(recent)

    def remember(self, record: TurnRecord) -> None:
        """Put a turn this worker answered on top of its user's entry, if there is one.

        In place: the entry's expiry stays that of its read from the database.
        """
        recent = self._kept(record.user_id)
        if recent is not None:
            with self._lock:
                recent.insert(0, RecentTurn(record.metadata.get("worldview"), record.metadata.get("challenge"), None, None))
                del recent[RECENT_TURNS:]

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1
        self.metrics.incr(f"history.{outcome}")

    def _kept(self, user_id: str) -> list[RecentTurn] | None:
        if self._recent is None:
            return None
        with self._lock:
            return self._recent.get(user_id)

    def forget(self, user_id: str) -> None:
        """Drop the user's entry: their feedback changed what the database would answer."""
        if self._recent is not None:
            with self._lock:
                self._recent.pop(user_id, None)

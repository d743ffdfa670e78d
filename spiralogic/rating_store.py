"""Gets a rating into the ``feedback`` table: now, or later if the database is away.

The endpoint and the replay apply the same rules (``check``): the turn exists
and is the user's, and acceptedChallenge goes only with a turn that offered a
challenge. When the database cannot be reached (an outage, not a refusal of the
row's content) the rating is journaled (``spiralogic.journal``, a directory of
its own) and the endpoint answers 202; so is a rating whose turn is not found
while this host's telemetry journal holds rows, since the turn may be among
them. The telemetry writer's thread replays this journal after its own, when
the database answers again and at start-up. On replay a rating whose turn row
has not arrived waits for it (while the telemetry journal holds rows, then up to
``turn_wait_s``); one that breaks a rule is set aside in the journal's
``rejected/`` directory and counted, never dropped silently.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row

from spiralogic.errors import ApiError
from spiralogic.journal import Journal
from spiralogic.schemas import FeedbackRequest
from spiralogic.tables import ConsciousnessTurnMeta, Feedback
from spiralogic.telemetry import refusal, refused_for_content, write_sorting_out_refused

log = logging.getLogger(__name__)
TURNS = ConsciousnessTurnMeta.__table__
FEEDBACK = Feedback.__table__
INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
#: the columns a rating replaces when the turn is rated again
REPLACED = ("sentiment", "rating", "accepted_challenge", "created_at")
#: how long to sleep between looks for a turn row still on its way (s)
POLL_S = 0.05
#: how long a queued rating whose turn row has not arrived waits before the next look (s)
RETRY_S = 1.0


class RatingStore:
    def __init__(
        self,
        engine: Engine,
        journal: Journal,
        turns_journal: Journal,
        *,
        turn_wait_s: float,
        on_queued: Callable[[], None] = lambda: None,
    ):
        """``turns_journal`` is where turn rows wait during an outage (the telemetry journal);
        ``on_queued`` runs after a rating is journaled (it starts the thread that replays)."""
        self.engine = engine
        self.journal = journal
        self.turns_journal = turns_journal
        self.turn_wait_s = turn_wait_s
        self.on_queued = on_queued
        self.counts = {"stored": 0, "queued": 0, "replayed": 0, "rejected": 0, "unavailable": 0}
        self._count_lock = threading.Lock()

    def submit(self, row: dict[str, Any], wait_s: float) -> tuple[str, bool]:
        """Store the rating (a ``new_rating`` row), or journal it: its feedback id, and whether it was queued.

        A turn row not there yet is looked for again until ``wait_s`` has passed.
        Raises ApiError when the rating breaks a rule, or 503 when it can be
        neither stored nor journaled.
        """
        try:
            turn, journaled = self._await_turn(uuid.UUID(row["turn_id"]), wait_s)
            if turn is None and journaled:
                return self._queue(row), True
            check(turn, row)
            with self.engine.begin() as conn:
                feedback_id = store(conn, row)
        except sa.exc.SQLAlchemyError as exc:
            if refused_for_content(exc):
                raise
            log.warning("feedback: database unavailable (%s); queueing the rating of turn %s", exc.__class__.__name__, row["turn_id"])
            return self._queue(row), True
        self._count("stored")
        return str(feedback_id), False

    def replay_journal(self) -> int:
        """Store the queued ratings that pass the rules; returns how many were stored."""
        before = self.counts["replayed"]
        self.journal.replay(self._replay, retry_after=RETRY_S)
        return self.counts["replayed"] - before

    def _await_turn(self, turn_id: uuid.UUID, wait_s: float) -> tuple[Row | None, bool]:
        """The turn's row, looking again until ``wait_s`` has passed; and, when it is not
        found, whether it may still be in the telemetry journal."""
        deadline = time.monotonic() + wait_s
        while True:
            # Looked at before the row: a replay empties the journal only after storing its rows.
            journaled = not self.turns_journal.is_empty()
            with self.engine.connect() as conn:
                row = find_turns(conn, [turn_id]).get(str(turn_id))
            if row is not None or time.monotonic() >= deadline:
                return row, journaled
            time.sleep(POLL_S)  # cooperative under gevent: other requests run meanwhile

    def _queue(self, row: dict[str, Any]) -> str:
        try:
            # On the event loop, not a native thread: under gevent, closing the directory's fd
            # after its fsync from another thread can fail once the rating is already kept.
            self.journal.append([row])
        except OSError:
            log.exception("feedback journal unwritable; the rating of turn %s is refused", row["turn_id"])
            self._count("unavailable")
            raise ApiError(503, "unavailable", "the database is unavailable; retry shortly", None, {"Retry-After": "5"}) from None
        self._count("queued")
        self.on_queued()
        return row["id"]

    def _replay(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Store each rating that passes the rules; returns those still waiting for their turn
        row. An outage raises (the files are tried again later)."""
        return write_sorting_out_refused(rows, self._replay_together, lambda row, exc: self._set_aside(row, refusal(exc)))

    def _replay_together(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One transaction for ``rows``: those that pass the rules are stored, those that break
        one set aside (once it commits); returns those waiting for their turn row."""
        waiting, refused, stored = [], [], 0
        with self.engine.begin() as conn:
            journaled = not self.turns_journal.is_empty()  # looked at before the turns, as in _await_turn
            turns = find_turns(conn, [uuid.UUID(row["turn_id"]) for row in rows])
            for row in rows:
                turn = turns.get(str(uuid.UUID(row["turn_id"])))
                if turn is None and self._turn_may_arrive(row, journaled):
                    waiting.append(row)
                    continue
                try:
                    check(turn, row)
                except ApiError as exc:
                    refused.append((row, f"{exc.code}: {exc.message}"))
                    continue
                store(conn, row)
                stored += 1
        for row, reason in refused:
            self._set_aside(row, reason)
        self._count("replayed", stored)
        return waiting

    def _turn_may_arrive(self, row: dict[str, Any], journaled: bool) -> bool:
        """Whether a missing turn row may still come: while this host's telemetry journal
        holds rows (``journaled``), then for ``turn_wait_s`` (a row spilled by another host,
        or in memory)."""
        if journaled:
            return True
        missing_since = row.setdefault("missing_since", time.time())  # kept with the row while it waits
        return time.time() - missing_since < self.turn_wait_s

    def _set_aside(self, row: dict[str, Any], reason: str) -> None:
        log.error("queued rating %s of turn %s set aside: %s", row.get("id"), row.get("turn_id"), reason)
        self.journal.reject([row], reason)
        self._count("rejected")

    def _count(self, key: str, amount: int = 1) -> None:
        with self._count_lock:
            self.counts[key] += amount


def new_rating(body: FeedbackRequest, sentiment: int) -> dict[str, Any]:
    """A rating as plain JSON values, the form the journal keeps; its time is now."""
    return {
        "id": str(uuid.uuid4()),
        "user_id": body.userId,
        "turn_id": str(body.turnId),
        "rating": body.rating,
        "sentiment": sentiment,
        "accepted_challenge": body.acceptedChallenge,
        "created_at": datetime.now(timezone.utc).isoformat(),
    }


def find_turns(conn: Connection, turn_ids: list[uuid.UUID]) -> dict[str, Row]:
    """The stored turns among ``turn_ids`` (user_id, metadata), by id."""
    query = sa.select(TURNS.c.id, TURNS.c.user_id, TURNS.c.metadata).where(TURNS.c.id.in_(turn_ids))
    return {str(row.id): row for row in conn.execute(query)}


def check(turn: Row | None, row: dict[str, Any]) -> None:
    """The rules a rating must pass, when it arrives and when it is replayed."""
    if turn is None or turn.user_id != row["user_id"]:
        # One answer for "no such turn" and "not yours": ids of other users' turns stay unconfirmed.
        raise ApiError(404, "turn_not_found", f"no turn {row['turn_id']} of user {row['user_id']!r}", "turnId")
    if row["accepted_challenge"] is not None and not (turn.metadata or {}).get("challenge"):
        raise ApiError(422, "no_challenge", "acceptedChallenge applies only to a turn that offered a challenge", "acceptedChallenge")


def store(conn: Connection, row: dict[str, Any]) -> uuid.UUID:
    """Insert the rating, or replace the turn's earlier one unless that one is newer (a
    rating replayed late must not undo a later one); the row keeps its first id."""
    values = {
        **{name: row[name] for name in ("user_id", "rating", "sentiment", "accepted_challenge")},
        "id": uuid.UUID(row["id"]),
        "turn_id": uuid.UUID(row["turn_id"]),
        "created_at": datetime.fromisoformat(row["created_at"]),
    }
    insert = INSERT[conn.dialect.name](FEEDBACK).values(**values)
    upsert = insert.on_conflict_do_update(
        index_elements=[FEEDBACK.c.turn_id],
        set_={name: insert.excluded[name] for name in REPLACED},
        where=FEEDBACK.c.created_at <= insert.excluded.created_at,
    )
    stored = conn.execute(upsert.returning(FEEDBACK.c.id)).scalar_one_or_none()
    if stored is None:  # a newer rating stands
        stored = conn.execute(sa.select(FEEDBACK.c.id).where(FEEDBACK.c.turn_id == values["turn_id"])).scalar_one()
    return stored

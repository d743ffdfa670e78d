"""Writes one ``consciousness_turn_meta`` row per turn, off the request path.

Turns are queued in memory and written in batches by a background thread (a
greenlet under gunicorn's gevent workers). If the database is away, batches
spill to a local journal and are replayed when it returns, so a blip loses
nothing; only a queue overflow drops rows, and every drop is counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from spiralogic.journal import Journal
from spiralogic.tables import ConsciousnessTurnMeta
from spiralogic.turn import Turn, TurnRecord

log = logging.getLogger(__name__)
TABLE = ConsciousnessTurnMeta.__table__
_STOP = object()


class TelemetryWriter:
    def __init__(
        self,
        engine: Engine,
        journal: Journal,
        *,
        queue_size: int,
        batch_size: int,
        flush_interval: float,
        on_record: Callable[[Turn, TurnRecord], None] = lambda turn, record: None,
    ):
        self.engine = engine
        self.journal = journal
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.on_record = on_record
        self.counts = {"submitted": 0, "written": 0, "spilled": 0, "replayed": 0, "dropped": 0}
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, turn: Turn, record: TurnRecord) -> None:
        """Queue a row; never blocks the request. A full queue drops and counts."""
        self._ensure_started()
        try:
            self._queue.put_nowait((turn, record))
            self.counts["submitted"] += 1
        except queue.Full:
            self.counts["dropped"] += 1
            log.error("telemetry queue full: dropped the row of turn %s", record.id)

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until every queued row has been written or spilled."""
        if self._thread is None:
            return
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue and stop the writer (graceful shutdown)."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def replay_journal(self) -> int:
        replayed = self.journal.replay(self._insert)
        self.counts["replayed"] += replayed
        return replayed

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch, stop = self._next_batch()
            if batch:
                self._write(batch)
            for _ in range(len(batch) + stop):
                self._queue.task_done()
            if stop:
                return

    def _next_batch(self) -> tuple[list[dict[str, Any]], bool]:
        batch: list[dict[str, Any]] = []
        deadline = time.monotonic() + self.flush_interval
        while len(batch) < self.batch_size:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()) if batch else None)
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            turn, record = item
            self.on_record(turn, record)
            batch.append(as_row(record))
        return batch, False

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._insert(rows)
            self.counts["written"] += len(rows)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("telemetry write failed (%s); spilling %d rows to the journal", exc.__class__.__name__, len(rows))
            self.journal.append(rows)
            self.counts["spilled"] += len(rows)
            return
        if self.counts["spilled"] > self.counts["replayed"]:
            self._replay_quietly()

    def _replay_quietly(self) -> None:
        try:
            self.replay_journal()
        except sa.exc.SQLAlchemyError:
            log.warning("journal replay failed; will retry after the next successful write")

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows, ignoring ids already present so replays are idempotent."""
        with self.engine.begin() as conn:
            conn.execute(_insert_ignoring_duplicates(conn.dialect.name), [_bind(row) for row in rows])


def as_row(record: TurnRecord) -> dict[str, Any]:
    """The record as plain JSON values, the form the journal keeps."""
    row = asdict(record)
    row["created_at"] = record.created_at.isoformat()
    return row


def _bind(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "id": uuid.UUID(row["id"]), "created_at": datetime.fromisoformat(row["created_at"])}


def _insert_ignoring_duplicates(dialect: str):
    if dialect == "postgresql":
        return postgresql.insert(TABLE).on_conflict_do_nothing(index_elements=["id"])
    if dialect == "sqlite":
        return sqlite.insert(TABLE).on_conflict_do_nothing(index_elements=["id"])
    return sa.insert(TABLE)

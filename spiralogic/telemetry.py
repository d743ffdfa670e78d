"""Writes one ``consciousness_turn_meta`` row per turn, off the request path.

Turns are queued in memory and written in batches by a background thread (a
greenlet under gunicorn's gevent workers, which hands each insert to a native
thread: see ``spiralogic.offload``). If the database is away, batches
spill to a local journal and are replayed when it returns (after the next
successful write, on a timer while the writer is idle, and at start-up), so a
blip loses nothing; only a queue overflow drops rows, and every drop is
counted. A row the database refuses for its content is set aside (counted as
``rejected``) so it cannot hold back the others. The same thread replays the
feedback journal after its own (see ``replay_also``): one background writer
per worker for everything spilled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import fields
from datetime import datetime
from typing import Any, Callable, Protocol

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from spiralogic.journal import Journal
from spiralogic.offload import off_loop
from spiralogic.tables import ConsciousnessTurnMeta
from spiralogic.turn import Turn, TurnRecord

log = logging.getLogger(__name__)
TABLE = ConsciousnessTurnMeta.__table__
_STOP = object()
#: at most one "queue full" log line per this many seconds: logging every drop would slow turns
DROP_LOG_INTERVAL_S = 5.0


class Replayable(Protocol):
    journal: Journal

    def replay_journal(self) -> int: ...


class TelemetryWriter:
    def __init__(
        self,
        engine: Engine,
        journal: Journal,
        *,
        queue_size: int,
        batch_size: int,
        flush_interval: float,
        replay_interval: float = 1.0,
        prepare: Callable[[Turn, TurnRecord], None] = lambda turn, record: None,
        on_record: Callable[[Turn, TurnRecord], None] = lambda turn, record: None,
    ):
        self.engine = engine
        self.journal = journal
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.replay_interval = replay_interval
        self.prepare = prepare
        self.on_record = on_record
        self.counts = {"submitted": 0, "written": 0, "spilled": 0, "replayed": 0, "dropped": 0, "rejected": 0}
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._processed = 0  # queued rows written, spilled or rejected
        self._in_flight: list[dict[str, Any]] = []  # the batch being built or written
        self._dropped_logged_at = float("-inf")
        self._replay_sources: list[Replayable] = [self]
        self._start_if_pending(journal)

    def replay_also(self, source: Replayable) -> None:
        """Replay ``source``'s journal on this writer's thread, after this one's own: when it
        looks for a turn, rows spilled here are in by then."""
        self._replay_sources.append(source)
        self._start_if_pending(source.journal)

    def start(self) -> None:
        """Run the writer's thread (idempotent): the first row starts it, as does a journal filled elsewhere."""
        if self._running():
            return
        with self._lock:
            if not self._running():
                self._thread = threading.Thread(target=self._run, name="telemetry-writer", daemon=True)
                self._thread.start()

    def submit(self, turn: Turn, record: TurnRecord) -> None:
        """Queue a row; never blocks the request. A full queue drops and counts."""
        self.start()
        try:
            self._queue.put_nowait((turn, record))
            self._count("submitted")
        except queue.Full:
            self._count("dropped")
            self._log_drop(record)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row submitted before the call is written, spilled or rejected.

        Later submits do not extend the wait. False if that did not happen in time.
        """
        target = self.counts["submitted"]
        deadline = time.monotonic() + timeout
        while self._processed < target:
            if time.monotonic() >= deadline or not self._running():
                return self._processed >= target
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Drain the queue and stop the writer (graceful shutdown).

        Rows the writer could not finish in time (the database hangs) go to the
        journal rather than die with the process; a duplicate is harmless since
        replays skip ids already stored.
        """
        thread = self._thread
        if thread is None:
            return
        deadline = time.monotonic() + timeout
        try:
            # Not a plain put(): with the queue full and the writer stuck it would block forever.
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        thread.join(max(0.0, deadline - time.monotonic()))
        stuck = thread.is_alive()
        if stuck:
            log.warning("telemetry writer did not finish in %.1fs; spilling what it holds", timeout)
        if stuck or not self._queue.empty():
            self._spill_leftovers()  # also rows a late request queued behind the stop
        if stuck:
            with contextlib.suppress(queue.Full):
                self._queue.put_nowait(_STOP)  # so it ends if it ever comes unstuck
        self._thread = None

    def replay_journal(self) -> int:
        replayed = self.journal.replay(self._store)
        self._count("replayed", replayed)
        return replayed

    def _start_if_pending(self, journal: Journal) -> None:
        if journal.has_pending():
            # Rows an earlier process spilled must not wait for this one's first turn.
            self.start()

    def _running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def _run(self) -> None:
        while True:
            try:
                stop = self._step()
            except Exception:  # noqa: BLE001 - the writer must outlive any one bad batch
                log.exception("telemetry writer failed on a batch; carrying on")
                stop = False
            if stop:
                return

    def _step(self) -> bool:
        batch, taken, stop = self._next_batch()
        try:
            if batch:
                self._write(batch)
            elif stop or taken == 0:
                # Idle (or stopping): retry the journal, so a blip ends in a replay without new traffic.
                self._replay_if_pending()
        finally:
            self._in_flight = []
            self._count_processed(taken)
        return stop

    def _next_batch(self) -> tuple[list[dict[str, Any]], int, bool]:
        """Up to ``batch_size`` rows, waiting ``flush_interval`` from the first one.

        Returns the rows, how many queued rows were taken, and whether to stop.
        Waits at most ``replay_interval`` for a first row.
        """
        batch = self._in_flight = []
        taken = 0
        deadline = None
        while len(batch) < self.batch_size:
            timeout = self.replay_interval if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                break
            if item is _STOP:
                return batch, taken, True
            deadline = deadline or time.monotonic() + self.flush_interval
            taken += 1
            turn, record = item
            self._prepare(turn, record)
            row = self._serialise(record)
            if row is not None:
                batch.append(row)  # in flight before the hooks run: close() can spill it if one hangs
            self._observe(turn, record)
        return batch, taken, False

    def _prepare(self, turn: Turn, record: TurnRecord) -> None:
        try:
            self.prepare(turn, record)
        except Exception:  # noqa: BLE001 - enrichment is optional; the row is still written
            log.exception("telemetry enrichment failed on turn %s", record.id)

    def _observe(self, turn: Turn, record: TurnRecord) -> None:
        try:
            self.on_record(turn, record)
        except Exception:  # noqa: BLE001 - an observer's fault must not cost the batch its rows
            log.exception("telemetry observer failed on turn %s", record.id)

    def _serialise(self, record: TurnRecord) -> dict[str, Any] | None:
        try:
            return as_row(record)
        except Exception:  # noqa: BLE001 - a row that cannot even be serialised must not stop the writer
            log.exception("telemetry row of turn %s cannot be serialised; rejected", record.id)
            self._count("rejected")
            return None

    def _write(self, rows: list[dict[str, Any]]) -> None:
        try:
            self._store(rows)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("telemetry write failed (%s); spilling %d rows to the journal", exc.__class__.__name__, len(rows))
            self._spill(rows)
            return
        self._count("written", len(rows))
        self._replay_if_pending()

    def _spill(self, rows: list[dict[str, Any]]) -> None:
        try:
            self.journal.append(rows)
        except OSError:
            # Database and disk both failing: the rows are gone, but counted, never silently.
            log.exception("telemetry journal unwritable; dropped %d rows", len(rows))
            self._count("dropped", len(rows))
            return
        self._count("spilled", len(rows))

    def _replay_if_pending(self) -> None:
        # Any worker's files count: a worker that spilled may have died or gone idle.
        for source in self._replay_sources:
            try:
                if source.journal.has_pending():
                    source.replay_journal()
            except (sa.exc.SQLAlchemyError, OSError) as exc:  # the database is away, or the journal's disk
                log.warning(
                    "journal replay (%s) failed (%s); will retry in %.1fs or after the next successful write",
                    source.journal.directory.name,
                    exc.__class__.__name__,
                    self.replay_interval,
                )
                return

    def _store(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows; a row refused for its content is set aside instead of failing the batch.

        Otherwise one bad row would spill its whole batch, and its journal file
        would fail every replay forever. An outage still raises (caller spills).
        Only the database work leaves the event loop: the journal's file work stays on it.
        """
        write_sorting_out_refused(rows, lambda some: off_loop(self._insert, some), self._set_aside)

    def _set_aside(self, row: dict[str, Any], exc: Exception) -> None:
        log.error("telemetry row %s refused by the database (%s); kept aside", row.get("id"), exc.__class__.__name__)
        self.journal.reject([row], refusal(exc))
        self._count("rejected")

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        """Insert rows, ignoring ids already present so replays are idempotent."""
        with self.engine.begin() as conn:
            conn.execute(_insert_ignoring_duplicates(conn.dialect.name), [_bind(row) for row in rows])

    def _spill_leftovers(self) -> None:
        """Journal the writer's batch and whatever is still queued (shutdown with a stuck writer)."""
        rows = list(self._in_flight)
        taken = 0
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                taken += 1
                rows.append(self._serialise(item[1]))
        rows = [row for row in rows if row is not None]
        if rows:
            self._spill(rows)
        self._count_processed(taken)

    def _count(self, key: str, amount: int = 1) -> None:
        with self._count_lock:
            self.counts[key] += amount

    def _count_processed(self, amount: int) -> None:
        with self._count_lock:
            self._processed += amount

    def _log_drop(self, record: TurnRecord) -> None:
        now = time.monotonic()
        if now - self._dropped_logged_at >= DROP_LOG_INTERVAL_S:
            self._dropped_logged_at = now
            log.error("telemetry queue full: dropped the row of turn %s (%d dropped so far)", record.id, self.counts["dropped"])


def as_row(record: TurnRecord) -> dict[str, Any]:
    """The record as plain JSON values, the form the journal keeps.

    Round-tripped through JSON so a direct write and a replay store the same
    thing, and a plugin's odd tag value cannot fail the insert: a value JSON
    has no type for becomes its string, a non-finite float null.
    """
    # Shallow: the JSON round trip below copies the nested values (asdict would copy them twice).
    row = {field.name: getattr(record, field.name) for field in fields(record)}
    row["created_at"] = record.created_at.isoformat()
    try:
        return orjson.loads(orjson.dumps(row, default=str, option=orjson.OPT_NON_STR_KEYS))
    except orjson.JSONEncodeError:  # an integer past 64 bits, or nesting past orjson's depth: the standard library takes both
        return json.loads(json.dumps(row, default=str))


def refused_for_content(exc: Exception) -> bool:
    """The data is at fault (refused by the database, or a journal row that cannot be
    bound); any other database error is an outage, to be retried or journaled."""
    return isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError)) or not isinstance(exc, sa.exc.SQLAlchemyError)


def refusal(exc: Exception) -> str:
    """Why the database refused a row, as kept beside it in the journal."""
    return str(getattr(exc, "orig", None) or exc)[:500]


def write_sorting_out_refused(
    rows: list[dict[str, Any]],
    write: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None],
    set_aside: Callable[[dict[str, Any], Exception], None],
) -> list[dict[str, Any]]:
    """``write(rows)`` in one go; when the database refuses some row's content, each row
    alone, handing the refused ones to ``set_aside``, so one bad row cannot fail the
    others (nor, journaled, block every replay). An outage raises. Returns the rows
    ``write`` gave back (those it cannot take yet), all together.
    """
    try:
        return write(rows) or []
    except Exception as exc:  # noqa: BLE001 - sorted here: outage or bad content
        if not refused_for_content(exc):
            raise
    returned: list[dict[str, Any]] = []
    for row in rows:  # ids already stored are skipped by the writers, so rewriting is harmless
        try:
            returned += write([row]) or []
        except Exception as exc:  # noqa: BLE001
            if not refused_for_content(exc):
                raise
            set_aside(row, exc)
    return returned


def _bind(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "id": uuid.UUID(row["id"]), "created_at": datetime.fromisoformat(row["created_at"])}


def _insert_ignoring_duplicates(dialect: str):
    if dialect == "postgresql":
        return postgresql.insert(TABLE).on_conflict_do_nothing(index_elements=["id"])
    if dialect == "sqlite":
        return sqlite.insert(TABLE).on_conflict_do_nothing(index_elements=["id"])
    return sa.insert(TABLE)

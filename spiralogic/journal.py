"""A local spill file for rows the database could not take.

When the database is away, the telemetry writer appends the batch here (and
the feedback endpoint a rating, in a directory of its own) as JSON lines; once
the database answers again the rows are replayed. Every worker of a host
shares the directory. A file only ever appears complete (it is written under a
"writing" name, then renamed), and files are claimed by renaming them, so
several workers never replay the same file twice; a file claimed or being
written by a process that died is picked up again. Rows a replay cannot take
yet go back in a file that is due again later (the time is in its name).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

log = logging.getLogger(__name__)
SUFFIX = ".jsonl"
CLAIM_MARK = ".replaying-"
WRITE_MARK = ".writing-"
DUE_MARK = ".due-"
REJECTED = "rejected"
#: rows handed to one write, from as many files as it takes
BATCH_ROWS = 200


class Journal:
    def __init__(self, directory: Path):
        self.directory = directory

    def append(self, rows: Iterable[dict[str, Any]], delay: float = 0.0) -> None:
        """Write rows to a new file, replayable at once or only ``delay`` seconds from now."""
        self.directory.mkdir(parents=True, exist_ok=True)
        due = f"{DUE_MARK}{int((time.time() + delay) * 1000)}" if delay > 0 else ""
        name = f"{os.getpid()}-{uuid.uuid4().hex}{due}{SUFFIX}"
        # Written under a name replay skips while we live: another worker must never read half a file.
        writing = self.directory / f"{name}{WRITE_MARK}{os.getpid()}"
        _write_lines(writing, rows)
        writing.rename(self.directory / name)
        _sync_directory(self.directory)

    def reject(self, rows: list[dict[str, Any]], reason: str) -> None:
        """Keep rows the database refuses for their content, out of replay, for an operator."""
        directory = self.directory / REJECTED
        directory.mkdir(parents=True, exist_ok=True)
        _write_lines(directory / f"{os.getpid()}-{uuid.uuid4().hex}{SUFFIX}", [{**row, "_rejected": reason} for row in rows])

    def pending(self) -> int:
        """Rows waiting to be replayed (every file, claimed or not)."""
        return sum(len(_read_rows(path)) for path in self._files())

    def rejected(self) -> int:
        """Rows set aside for an operator."""
        return sum(len(_read_rows(path)) for path in (self.directory / REJECTED).glob(f"*{SUFFIX}"))

    def has_pending(self) -> bool:
        """Whether some file can be replayed by this process now (cheap: a directory listing)."""
        return bool(self._claimable())

    def is_empty(self) -> bool:
        """No file at all, not even one being written or replayed (cheap: a directory listing)."""
        return not self._files()

    def replay(
        self,
        write: Callable[[list[dict[str, Any]]], list[dict[str, Any]] | None],
        retry_after: float = 1.0,
        batch_rows: int = BATCH_ROWS,
    ) -> int:
        """Hand the due files' rows to ``write``, those of a few files at a time (up to about
        ``batch_rows`` rows); delete the files once written.

        ``write`` returns the rows it cannot take yet (or nothing): they go back
        to the journal, due again in ``retry_after`` seconds. It must be
        idempotent (rows keep their ids) because a crash after writing and
        before deleting replays the files again. Stops at the first failure and
        leaves those files for the next try. Returns how many rows were taken.
        """
        replayed = 0
        paths = iter(self._claimable())
        while claimed_rows := self._claim(paths, batch_rows):
            claimed, rows = claimed_rows
            try:
                waiting = (write(rows) if rows else None) or []
                if waiting:
                    self.append(waiting, retry_after)  # before the unlinks: a crash between them only replays again
            except BaseException:
                for path in claimed:
                    path.rename(path.with_name(_base(path)))
                raise
            for path in claimed:
                path.unlink()
            replayed += len(rows) - len(waiting)
            # Yield between batches (gevent patches sleep; 0 would not let the loop poll): a long
            # replay must not hold the worker's event loop, or turns queue behind it.
            time.sleep(0.001)
        return replayed

    def _claim(self, paths: Iterator[Path], batch_rows: int) -> tuple[list[Path], list[dict[str, Any]]] | None:
        """Claim the next files of ``paths`` until about ``batch_rows`` rows are in hand: the
        claimed files and their rows, or None when no file is left."""
        claimed, rows = [], []
        for path in paths:
            claim = path.with_name(f"{_base(path)}{CLAIM_MARK}{os.getpid()}")
            try:
                path.rename(claim)
            except FileNotFoundError:
                continue  # another worker claimed it first
            claimed.append(claim)
            rows += _read_rows(claim)
            if len(rows) >= batch_rows:
                break
        return (claimed, rows) if claimed else None

    def _files(self) -> list[Path]:
        if not self.directory.exists():
            return []
        return sorted(path for path in self.directory.iterdir() if SUFFIX in path.name and path.is_file())

    def _claimable(self) -> list[Path]:
        paths = []
        now = time.time()
        for path in self._files():
            owner = _owner(path)
            if (owner is None or not _process_alive(owner)) and _due_at(path) <= now:
                paths.append(path)
        return paths


def _base(path: Path) -> str:
    """The file's name without any claim or writing mark."""
    return path.name.split(SUFFIX)[0] + SUFFIX


def _due_at(path: Path) -> float:
    """When the file may be replayed (epoch seconds); 0 for a file due at once."""
    _, mark, millis = _base(path).removesuffix(SUFFIX).rpartition(DUE_MARK)
    try:
        return int(millis) / 1000 if mark else 0.0
    except ValueError:
        return 0.0


def _owner(path: Path) -> int | None:
    """The pid that claimed the file or is writing it; None when the file is free."""
    mark = path.name[len(_base(path)) :]
    for prefix in (CLAIM_MARK, WRITE_MARK):
        if mark.startswith(prefix):
            try:
                return int(mark[len(prefix) :])
            except ValueError:
                return None
    return None


def _write_lines(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, default=str) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The file's rows; a line cut short (a process died writing it) is skipped, not fatal."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []  # claimed or replayed by another worker meanwhile
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except ValueError:
            if line.strip():
                log.error("journal %s: skipped an unreadable line", path.name)
    return rows


def _sync_directory(directory: Path) -> None:
    # The rename must survive a power cut too, not just the file's content.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

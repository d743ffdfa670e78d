"""A local spill file for rows the database could not take.

When the database is away, the telemetry writer appends the batch here as JSON
lines; once the database answers again the rows are replayed. Files are
claimed by renaming them, so several workers sharing a data directory never
replay the same file twice, and a file claimed by a worker that died is picked
up again.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

CLAIM_MARK = ".replaying-"


class Journal:
    def __init__(self, directory: Path):
        self.directory = directory

    def append(self, rows: Iterable[dict[str, Any]]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, default=str) + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    def pending(self) -> int:
        """Rows waiting to be replayed (every file, claimed or not)."""
        if not self.directory.exists():
            return 0
        return sum(sum(1 for _ in path.open(encoding="utf-8")) for path in self.directory.glob("*.jsonl*"))

    def replay(self, write: Callable[[list[dict[str, Any]]], None]) -> int:
        """Hand each spilled file's rows to ``write``; delete the file once written.

        ``write`` must be idempotent (rows keep their ids) because a crash after
        writing and before deleting replays the file again. Stops at the first
        failure and leaves that file for the next try.
        """
        replayed = 0
        for path in self._claimable():
            claimed = path.with_name(path.name.split(CLAIM_MARK)[0] + f"{CLAIM_MARK}{os.getpid()}")
            try:
                path.rename(claimed)
            except FileNotFoundError:
                continue  # another worker claimed it first
            rows = [json.loads(line) for line in claimed.open(encoding="utf-8") if line.strip()]
            try:
                write(rows)
            except Exception:
                claimed.rename(path.with_name(path.name.split(CLAIM_MARK)[0]))
                raise
            claimed.unlink()
            replayed += len(rows)
        return replayed

    def _claimable(self) -> list[Path]:
        if not self.directory.exists():
            return []
        paths = []
        for path in sorted(self.directory.glob("*.jsonl*")):
            owner = path.name.partition(CLAIM_MARK)[2]
            if not owner or not _process_alive(int(owner)):
                paths.append(path)
        return paths


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

"""Operator switches kept in the database, so every worker and host sees the same.

Each change is stored with who made it, when and why. Reads are cached for a
moment per process: the request path must not query the database every turn.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from spiralogic.tables import FlagChange, RuntimeFlag

log = logging.getLogger(__name__)
FLAGS = RuntimeFlag.__table__
CHANGES = FlagChange.__table__
#: flag -> value when never set; ``percent`` None defers to the ``rollout.percent`` setting
DEFAULTS: dict[str, Any] = {
    "forced_mode": None,
    "lite_by_default": False,
    "kill_switch": False,
    "phase": "baseline",
    "percent": None,
}


class RuntimeFlags:
    def __init__(self, engine: Engine, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.ttl = ttl
        self.clock = clock
        self._cached: dict[str, Any] | None = None
        self._read_at = 0.0
        #: False while the last read failed: the values are then only the last known ones
        self.readable = True

    def all(self, fresh: bool = False) -> dict[str, Any]:
        """Every flag; if the database cannot be read, the last known values hold."""
        if fresh or self._cached is None or self.clock() - self._read_at > self.ttl:
            try:
                with self.engine.connect() as conn:
                    stored = {row.key: row.value for row in conn.execute(sa.select(FLAGS.c.key, FLAGS.c.value))}
                self._cached = {**DEFAULTS, **stored}
                self.readable = True
            except sa.exc.SQLAlchemyError as exc:
                self.readable = False
                if fresh:
                    raise
                log.warning("runtime flags unreadable (%s); keeping the last known values", type(exc).__name__)
                self._cached = self._cached or dict(DEFAULTS)
            self._read_at = self.clock()
        return self._cached

    def get(self, key: str) -> Any:
        return self.all()[key]

    def set(self, key: str, value: Any, *, actor: str, reason: str, now: datetime) -> None:
        if key not in DEFAULTS:
            raise KeyError(f"unknown runtime flag {key!r}")
        values = {"value": value, "updated_at": now, "updated_by": actor, "reason": reason}
        with self.engine.begin() as conn:
            if not conn.execute(sa.update(FLAGS).where(FLAGS.c.key == key).values(**values)).rowcount:
                conn.execute(sa.insert(FLAGS).values(key=key, **values))
            conn.execute(sa.insert(CHANGES).values(at=now, key=key, value=value, actor=actor, reason=reason))
        self._cached = None

    def audit(self, limit: int = 50) -> list[dict[str, Any]]:
        """The most recent changes first: key, value, who, when and why."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(CHANGES).order_by(CHANGES.c.id.desc()).limit(limit))
            return [dict(row._mapping) for row in rows]

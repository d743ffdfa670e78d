"""Queue health from the job rows: depth and the P95 of how long jobs wait for a worker.

The P95 feeds the VoiceQueueBacklog alert (``voice.queue.age_p95_ms``) and the
automatic SFX guard: expressive tags are dropped while it exceeds
``tags_off_p95_s`` and come back once it falls under again. Reads are reused
for a few seconds, so the request path does not query the jobs table on every
voiced turn.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Callable

from spiralogic.monitoring import nearest_rank
from spiralogic.voice.store import JobStore

#: seconds a health reading is reused by the request path
CACHE_S = 5.0


def p95(values: list[int]) -> int:
    """The nearest-rank 95th percentile (PostgreSQL's percentile_disc); 0 for no values."""
    return nearest_rank(sorted(values), 0.95) if values else 0


@dataclass(frozen=True)
class Reading:
    depth: int
    age_p95_ms: int
    tags_enabled: bool


class QueueHealth:
    def __init__(
        self,
        store: JobStore,
        *,
        window_s: float,
        tags_off_p95_s: float,
        clock: Callable[[], datetime],
        cache_s: float = CACHE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ):
        self.store = store
        self.window_s = window_s
        self.tags_off_ms = tags_off_p95_s * 1000
        self.clock = clock
        self.cache_s = cache_s
        self.monotonic = monotonic
        self._reading: Reading | None = None
        self._read_at = 0.0

    def read(self, fresh: bool = False) -> Reading:
        if fresh or self._reading is None or self.monotonic() - self._read_at >= self.cache_s:
            age = p95(self.store.queue_ages_ms(self.clock(), self.window_s))
            self._reading = Reading(depth=self.store.depth(), age_p95_ms=age, tags_enabled=age <= self.tags_off_ms)
            self._read_at = self.monotonic()
        return self._reading

    def tags_enabled(self) -> bool:
        return self.read().tags_enabled

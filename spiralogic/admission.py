"""Admission control for one worker process.

Under CPU saturation a gevent worker's timers fire late, so budgets cannot be
held by timers alone. Past a threshold of turns in flight, or of event-loop
lag, new turns go straight to the (cheap) fallback reply; past a hard cap
they are refused with 503 and Retry-After, so the turns admitted keep their
budget instead of every turn becoming slow.
"""

from __future__ import annotations

import logging
import time
from enum import Enum

import gevent
from gevent import monkey

log = logging.getLogger(__name__)


class Decision(str, Enum):
    ADMIT = "admit"
    DEGRADE = "degrade"
    REJECT = "reject"


class Admission:
    def __init__(self, *, degrade_in_flight: int, max_in_flight: int, degrade_lag_ms: float, reject_lag_ms: float):
        self.degrade_in_flight = degrade_in_flight
        self.max_in_flight = max_in_flight
        self.degrade_lag_ms = degrade_lag_ms
        self.reject_lag_ms = reject_lag_ms
        self.in_flight = 0
        self.lag_ms = 0.0
        self._monitor: gevent.Greenlet | None = None

    def enter(self) -> Decision:
        """Decide for a new turn; every ADMIT or DEGRADE must be paired with ``leave``."""
        self._ensure_monitor()
        if self.in_flight >= self.max_in_flight or self.lag_ms >= self.reject_lag_ms:
            return Decision.REJECT
        self.in_flight += 1
        if self.in_flight > self.degrade_in_flight or self.lag_ms >= self.degrade_lag_ms:
            return Decision.DEGRADE
        return Decision.ADMIT

    def leave(self) -> None:
        self.in_flight -= 1

    def _ensure_monitor(self) -> None:
        # Only a monkey-patched (gunicorn gevent) worker has a free-running event loop to measure.
        if self._monitor is None and monkey.is_module_patched("socket"):
            self._monitor = gevent.spawn(self._watch_lag)

    def _watch_lag(self, interval: float = 0.05) -> None:
        """Measure how late a short sleep wakes up: that is how long every turn waits for the CPU."""
        while True:
            started = time.monotonic()
            gevent.sleep(interval)
            overshoot_ms = (time.monotonic() - started - interval) * 1000
            # Rise at once, decay over about a second: one quiet tick must not reopen the gate.
            self.lag_ms = max(overshoot_ms, self.lag_ms * 0.8)

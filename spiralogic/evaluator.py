"""The evaluator loop: periodic checks that must run in one place at a time.

Each round runs the mode controller, then the alert rules (which include the
rollback triggers). Every worker may run the loop; a database lease makes
sure only one of them (on any host) evaluates in a given period, so a
transition or an alert never fires twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy.engine import Engine

from spiralogic import lease
from spiralogic.offload import off_loop

log = logging.getLogger(__name__)
LEASE = "evaluator"


class Evaluator:
    def __init__(self, engine: Engine, checks: list[Callable[[datetime], object]], *, interval_s: float, clock: Callable[[], datetime]):
        self.engine = engine
        self.checks = checks
        self.interval_s = interval_s
        self.clock = clock
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> bool:
        """One round if this process holds the lease; True if it evaluated."""
        now = self.clock()
        if not lease.acquire(self.engine, LEASE, self.holder, timedelta(seconds=self.interval_s * 3), now):
            return False
        for check in self.checks:
            check(now)
        return True

    def start(self) -> None:
        """Run the loop in the background (a greenlet under gevent); idempotent."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="evaluator", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            lease.release(self.engine, LEASE, self.holder)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                off_loop(self.run_once)
            except Exception:  # noqa: BLE001 - the loop must outlive a database blip
                log.exception("evaluator round failed")

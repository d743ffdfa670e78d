"""Waiting for something another thread or process does, without a fixed sleep."""

from __future__ import annotations

import time


def wait_for(condition, timeout: float, every: float = 0.05) -> bool:
    """Whether ``condition()`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True

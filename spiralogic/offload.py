"""Blocking database work moved off a gevent worker's event loop.

A gevent worker serves every request on one thread. A query that blocks in C
(SQLite waiting for another process's write lock, an aggregate over a large
window) stops them all, and admission control reads that stall as overload.
Background loops (the evaluator, the telemetry writer) hand such work to the
hub's pool of native threads: their greenlet waits cooperatively, and the
database drivers release the GIL while they wait. Outside a patched worker
(the CLI, tests) the work simply runs where it is called.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import gevent
from gevent import monkey

T = TypeVar("T")


def off_loop(work: Callable[..., T], *args: Any) -> T:
    """``work(*args)``, on a native thread when the process runs on gevent; raises what it raises."""
    if not monkey.is_module_patched("threading"):
        return work(*args)
    return gevent.get_hub().threadpool.apply(work, args)

"""statsd metrics, or nothing when no statsd host is configured.

Core and plugins emit through this one object (``services.metrics`` in a
turn, ``app_state().metrics`` elsewhere), so switching statsd on is a setting.
Sends are single UDP datagrams: they never wait on the collector.
"""

from __future__ import annotations

from typing import Protocol

import statsd


class Metrics(Protocol):
    def incr(self, stat: str, count: int = 1, rate: float = 1) -> None: ...

    def timing(self, stat: str, delta: float, rate: float = 1) -> None: ...

    def gauge(self, stat: str, value: float, rate: float = 1, delta: bool = False) -> None: ...


class NoMetrics:
    """Stands in when statsd is off, so callers never check."""

    def incr(self, stat: str, count: int = 1, rate: float = 1) -> None:
        pass

    def timing(self, stat: str, delta: float, rate: float = 1) -> None:
        pass

    def gauge(self, stat: str, value: float, rate: float = 1, delta: bool = False) -> None:
        pass


def build_metrics(settings) -> Metrics:
    if not settings.statsd.host:
        return NoMetrics()
    return statsd.StatsClient(settings.statsd.host, settings.statsd.port, prefix=settings.statsd.prefix or None)

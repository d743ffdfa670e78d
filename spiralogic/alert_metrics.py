"""The values alert rules compare, computed from the service's own tables.

Each returns None when its window holds no data, so a rule's ``no_data``
policy applies rather than a made-up zero.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy.engine import Engine

from spiralogic import monitoring
from spiralogic.alerting import MetricSource
from spiralogic.minute_totals import MinuteTotals
from spiralogic.voice.store import JobStore

#: metric name -> attribute of monitoring.Aggregate
AGGREGATED = {
    "latency_p50_ms": "latency_p50_ms",
    "latency_p95_ms": "latency_p95_ms",
    "first_token_p95_ms": "first_token_p95_ms",
    "error_rate": "error_rate",
    "fallback_rate": "fallback_rate",
    "cache_hit_rate": "cache_hit_ratio",
}
#: the aggregated metrics that need every value of the window ranked, not just counted
RANKED = {"latency_p50_ms", "latency_p95_ms", "first_token_p95_ms"}
BASELINE_SPAN = timedelta(hours=24)

Extra = Callable[[Engine, datetime, datetime, "str | None"], "float | None"]


def metric_source(engine: Engine, extra: dict[str, Extra] | None = None) -> MetricSource:
    """Alert metrics over ``engine``; ``extra`` adds metrics other parts of the service own."""
    minutes = MinuteTotals(engine)
    computed: dict[str, Extra] = {**{name: make(minutes) for name, make in COMPUTED.items()}, **(extra or {})}
    this_round: dict[tuple[datetime, datetime, str | None, bool], monitoring.Aggregate] = {}

    def aggregate(since: datetime, until: datetime, orchestrator: str | None, ranked: bool) -> monitoring.Aggregate:
        # The rules of one round share its end, and most share a window: query each window once,
        # and rank its values only for a rule that reads a percentile. Counts alone add up
        # minute by minute, so a long window reads only what is new since the last round.
        if this_round and next(iter(this_round))[1] != until:
            this_round.clear()
        full = (since, until, orchestrator, True)
        key = full if ranked or full in this_round else (since, until, orchestrator, False)
        if key not in this_round:
            this_round[key] = (
                monitoring.window_aggregate(engine, since, until, orchestrator)
                if key is full
                else minutes.window(since, until, orchestrator, until).aggregate()
            )
        return this_round[key]

    def value(name: str, since: datetime, until: datetime, orchestrator: str | None) -> float | None:
        if name in AGGREGATED:
            window = aggregate(since, until, orchestrator, name in RANKED)
            return getattr(window, AGGREGATED[name]) if window.count else None
        if name in computed:
            return computed[name](engine, since, until, orchestrator)
        raise KeyError(f"unknown alert metric {name!r}")

    return value


def known_metrics(extra: dict[str, Extra] | None = None) -> set[str]:
    return {*AGGREGATED, *COMPUTED, *(extra or {})}


def tokens_vs_24h(minutes: MinuteTotals) -> Extra:
    """Average tokens per response in the window over the average in the 24 hours before it."""

    def value(engine: Engine, since: datetime, until: datetime, orchestrator: str | None) -> float | None:
        recent = minutes.window(since, until, orchestrator, until).tokens_per_response
        baseline = minutes.window(since - BASELINE_SPAN, since, orchestrator, until).tokens_per_response
        if recent is None or not baseline:
            return None
        return recent / baseline

    return value


def tts_queue_age_p95_s(engine: Engine, since: datetime, until: datetime, orchestrator: str | None) -> float | None:
    """P95 of how long voice jobs waited for a worker: those started in the window, and
    those still waiting at its end (a stalled queue must show, not read as no data)."""
    ages_ms = JobStore(engine).queue_ages_ms(until, (until - since).total_seconds())
    return monitoring.nearest_rank(sorted(ages_ms), 0.95) / 1000 if ages_ms else None


#: metric name -> what makes its function, once per metric source, from the source's kept minutes
COMPUTED: dict[str, Callable[[MinuteTotals], Extra]] = {
    "tokens_vs_24h": tokens_vs_24h,
    "tts_queue_age_p95_s": lambda minutes: tts_queue_age_p95_s,
}

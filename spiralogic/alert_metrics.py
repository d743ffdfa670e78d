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
#: how old a day-long baseline may grow before it is read again (under 1% of its span)
BASELINE_REFRESH = timedelta(minutes=10)

Extra = Callable[[Engine, datetime, datetime, "str | None"], "float | None"]


def metric_source(engine: Engine, extra: dict[str, Extra] | None = None) -> MetricSource:
    """Alert metrics over ``engine``; ``extra`` adds metrics other parts of the service own."""
    computed: dict[str, Extra] = {**{name: make() for name, make in COMPUTED.items()}, **(extra or {})}
    this_round: dict[tuple[datetime, datetime, str | None, bool], monitoring.Aggregate] = {}

    def aggregate(since: datetime, until: datetime, orchestrator: str | None, ranked: bool) -> monitoring.Aggregate:
        # The rules of one round share its end, and most share a window: query each window once,
        # and rank its values only for a rule that reads a percentile.
        if this_round and next(iter(this_round))[1] != until:
            this_round.clear()
        full = (since, until, orchestrator, True)
        key = full if ranked or full in this_round else (since, until, orchestrator, False)
        if key not in this_round:
            this_round[key] = monitoring.window_aggregate(engine, since, until, orchestrator, percentiles=key is full)
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


class TokensVs24h:
    """Average tokens per response in the window over the average in the 24 hours before it.

    The baseline is a day of turns and a round comes every few seconds: it is read
    again only once it is ``BASELINE_REFRESH`` old, not every round, or each round
    would scan a whole day of telemetry.
    """

    def __init__(self) -> None:
        #: (orchestrator, window length) -> (the window start it was read for, the average)
        self._baselines: dict[tuple[str | None, timedelta], tuple[datetime, float | None]] = {}

    def __call__(self, engine: Engine, since: datetime, until: datetime, orchestrator: str | None) -> float | None:
        recent = _average_tokens(engine, since, until, orchestrator)
        baseline = self._baseline(engine, since, until - since, orchestrator)
        if recent is None or not baseline:
            return None
        return recent / baseline

    def _baseline(self, engine: Engine, since: datetime, window: timedelta, orchestrator: str | None) -> float | None:
        key = (orchestrator, window)
        kept = self._baselines.get(key)
        if kept is None or not timedelta(0) <= since - kept[0] < BASELINE_REFRESH:
            kept = (since, _average_tokens(engine, since - BASELINE_SPAN, since, orchestrator))
            self._baselines[key] = kept
        return kept[1]


def _average_tokens(engine: Engine, since: datetime, until: datetime, orchestrator: str | None) -> float | None:
    rows = monitoring.tokens_per_response(engine, since, until, orchestrator)
    responses = sum(row.responses for row in rows)
    return sum(row.avg_tokens * row.responses for row in rows) / responses if responses else None


def tts_queue_age_p95_s(engine: Engine, since: datetime, until: datetime, orchestrator: str | None) -> float | None:
    """P95 of how long voice jobs waited for a worker: those started in the window, and
    those still waiting at its end (a stalled queue must show, not read as no data)."""
    ages_ms = JobStore(engine).queue_ages_ms(until, (until - since).total_seconds())
    return monitoring.nearest_rank(sorted(ages_ms), 0.95) / 1000 if ages_ms else None


#: metric name -> what makes its function, once per metric source (a function may keep state across rounds)
COMPUTED: dict[str, Callable[[], Extra]] = {"tokens_vs_24h": TokensVs24h, "tts_queue_age_p95_s": lambda: tts_queue_age_p95_s}

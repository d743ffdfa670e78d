"""Turns the load generator's rows into the numbers the report shows.

Only requests that *started* inside the measured window count (the warm-up
is dropped); requests still in flight when the window closes are allowed to
finish and count too. Percentiles are nearest-rank, like the playbook's
``percentile_disc``. Latency percentiles cover every request that got an
HTTP answer; transport errors and timeouts count as errors only.
"""

from __future__ import annotations

import math
from collections import Counter
from statistics import fmean


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_stats(values: list[float]) -> dict:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "mean": _r(fmean(ordered)) if ordered else None,
        "p50": _r(percentile(ordered, 50)),
        "p95": _r(percentile(ordered, 95)),
        "p99": _r(percentile(ordered, 99)),
        "max": _r(ordered[-1]) if ordered else None,
    }


def summarize(run: dict) -> dict:
    fields = run["fields"]
    rows = [dict(zip(fields, row)) for row in run["samples"]]
    start, end = run["window"]["start_s"], run["window"]["end_s"]
    measured = [row for row in rows if start <= row["start_s"] < end]
    answered = [row for row in measured if row["status"] is not None]
    errors = [row for row in measured if row["error"] is not None or row["status"] != 200]
    streamed = [row for row in measured if row["first_token_ms"] is not None]
    cache_known = [row for row in answered if row["cache_hit"] is not None]
    n = len(measured)
    return {
        "requests": n,
        "warmup_requests": sum(1 for row in rows if row["start_s"] < start),
        "rps": _r(n / (end - start)) if end > start else None,
        "latency_ms": latency_stats([row["latency_ms"] for row in answered]),
        # Fast refusals (503 under admission control) pull the all-answers percentiles down.
        "ok_latency_ms": latency_stats([row["latency_ms"] for row in answered if row["status"] == 200 and not row["error"]]),
        "first_token_ms": latency_stats([row["first_token_ms"] for row in streamed]),
        "server_first_token_ms": latency_stats([row["server_first_token_ms"] for row in answered if row["server_first_token_ms"] is not None]),
        # Beside the client's latency: the difference is time spent outside the turn (accept queue, parsing, writing).
        "server_latency_ms": latency_stats([row["server_latency_ms"] for row in answered if row["server_latency_ms"] is not None]),
        "streamed_requests": sum(1 for row in measured if row["stream"]),
        "error_rate": _r(len(errors) / n, 4) if n else None,
        "status_counts": _counts(measured),
        "mode_mix": _shares(Counter(row["mode"] or "unknown" for row in answered if row["status"] == 200)),
        "orchestrator_mix": _shares(Counter(row["orchestrator"] or "unknown" for row in answered if row["status"] == 200)),
        "cache_hit_ratio": _r(sum(1 for row in cache_known if row["cache_hit"]) / len(cache_known), 4) if cache_known else None,
        "client": {
            "cpu_percent": run["client"]["cpu_percent"],
            "loop_lag_ms": latency_stats(run["client"]["loop_lag_ms"]),
        },
    }


def _counts(rows: list[dict]) -> dict[str, int]:
    """HTTP statuses, plus transport errors and 200s whose body was unusable, by kind."""
    counts: Counter = Counter()
    for row in rows:
        if row["status"] is None:
            counts[row["error"] or "transport"] += 1
        elif row["error"]:
            counts[f"{row['status']} {row['error']}"] += 1
        else:
            counts[str(row["status"])] += 1
    return dict(counts.most_common())


def _shares(counter: Counter) -> dict[str, float]:
    total = sum(counter.values())
    return {key: round(count / total, 4) for key, count in counter.most_common()} if total else {}


def overhead(ours: dict, floor: dict) -> dict:
    """Spiralogic minus the floor, and Spiralogic over the floor, for P50, P99 and req/s."""
    pairs = {
        "p50_ms": (ours["latency_ms"]["p50"], floor["latency_ms"]["p50"]),
        "p99_ms": (ours["latency_ms"]["p99"], floor["latency_ms"]["p99"]),
        "rps": (ours["rps"], floor["rps"]),
    }
    result = {}
    for name, (a, b) in pairs.items():
        if a is None or b is None:
            result[name] = {"ours": a, "floor": b, "diff": None, "ratio": None}
        else:
            result[name] = {"ours": a, "floor": b, "diff": _r(a - b), "ratio": _r(a / b, 3) if b else None}
    return result


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)

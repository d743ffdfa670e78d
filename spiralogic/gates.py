"""The playbook's promotion gates, judged from the turn telemetry.

Rules live in ``config/gates.toml``. An evaluation covers a window (default
``hold_minutes``, 60) that ends at the last whole minute, and takes one sample
per minute over the candidate turns of the trailing ``sample_span_minutes``.
Each sample is successful, failed, inconclusive (fewer than
``sample_min_requests`` turns, or a gate with nothing to judge: it pauses,
never fails) or error (the query failed).

The gates hold when all of these are true:

- the window gave at least ``hold_minutes`` minutes of samples (error samples
  do not count);
- the window has at least ``min_requests`` candidate turns;
- every gate passes on the aggregate over the whole window (percentiles over
  all of its turns);
- the last ``consecutive_samples`` conclusive samples all passed;
- no run of more than ``max_failed_run`` failed samples anywhere in the window
  (inconclusive samples pause a run): one bad minute fails up to
  ``sample_span_minutes`` samples in a row, a longer run is a sustained breach.

Judging is pure (aggregate in, verdict out); only :func:`evaluate` reads the
database.
"""

from __future__ import annotations

import operator
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Callable, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, ValidationError

from spiralogic.monitoring import Aggregate, Bind, WindowError, as_json, as_utc, parse_duration, span_aggregates, window_aggregate
from spiralogic.settings import CONFIG_DIR, ConfigError

DEFAULT_PATH = CONFIG_DIR / "gates.toml"
MINUTE = timedelta(minutes=1)
#: values and thresholds are compared at this many decimals, so a rate that is exactly at
#: its threshold in decimal (0.75%) is not failed by binary floating point
PRECISION = 6
OPERATORS: dict[str, Callable[[float, float], bool]] = {"<=": operator.le, "<": operator.lt, ">=": operator.ge}


def _percent(part: int, whole: int) -> float | None:
    # 100 * part first: an exact integer, then one correctly rounded division.
    return 100 * part / whole if whole else None


#: what each gate metric reads from an aggregate, in the gate's unit
METRICS: dict[str, Callable[[Aggregate], float | None]] = {
    "latency_p95_ms": lambda a: a.latency_p95_ms,
    "latency_p50_ms": lambda a: a.latency_p50_ms,
    "first_token_p95_ms": lambda a: a.first_token_p95_ms,
    "error_rate_pct": lambda a: _percent(a.errors, a.count),
    "fallback_rate_pct": lambda a: _percent(a.fallbacks, a.count),
    "cache_hit_pct": lambda a: _percent(a.cache_hits, a.count),
    "quality_pct": lambda a: None if a.quality_mean is None else 100 * a.quality_mean,
}


class Verdict(StrEnum):
    SUCCESSFUL = "successful"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


# -- Rules (config/gates.toml) --------------------------------------------------


class Gate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    title: str = Field(min_length=1)
    metric: Literal[tuple(METRICS)]  # type: ignore[valid-type]
    operator: Literal["<=", "<", ">="]
    threshold: float
    unit: str = ""
    relative_to: Literal["baseline"] | None = None


class Rules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    candidate: str = Field(min_length=1)
    baseline: str = Field(min_length=1)
    hold_minutes: PositiveInt
    min_requests: PositiveInt
    sample_span_minutes: PositiveInt
    sample_min_requests: PositiveInt
    consecutive_samples: PositiveInt
    max_failed_run: NonNegativeInt
    baseline_min_requests: PositiveInt


class GatesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    evaluation: Rules
    gates: tuple[Gate, ...] = Field(min_length=1)


def load_gates(path: Path = DEFAULT_PATH) -> GatesConfig:
    try:
        with open(path, "rb") as handle:
            return GatesConfig.model_validate(tomllib.load(handle))
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ConfigError(f"gates rules {path}: {exc}") from exc


# -- Judging (pure) ------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    name: str
    title: str
    operator: str
    unit: str
    value: float | None
    #: the threshold applied; for a relative gate, baseline + offset
    threshold: float | None
    #: the baseline cohort's value of a relative gate's metric
    baseline: float | None
    verdict: Verdict
    note: str = ""


@dataclass(frozen=True)
class SampleResult:
    #: the newest minute the sample covers
    minute: datetime
    requests: int
    verdict: Verdict
    failed: tuple[str, ...] = ()
    error: str = ""


def check(value: float | None, op: str, threshold: float | None) -> Verdict:
    """One comparison as the playbook writes it; nothing to compare is inconclusive."""
    if value is None or threshold is None:
        return Verdict.INCONCLUSIVE
    passed = OPERATORS[op](round(value, PRECISION), round(threshold, PRECISION))
    return Verdict.SUCCESSFUL if passed else Verdict.FAILED


def judge(gate: Gate, aggregate: Aggregate, baseline: Aggregate, rules: Rules) -> GateResult:
    """A gate on an aggregate of candidate turns; ``baseline`` is the control cohort's aggregate."""
    value = METRICS[gate.metric](aggregate)
    threshold, base, note = gate.threshold, None, ""
    if gate.relative_to:
        base = METRICS[gate.metric](baseline) if baseline.count >= rules.baseline_min_requests else None
        threshold = None if base is None else base + gate.threshold
        if base is None:
            note = f"baseline cohort: {baseline.count} turns, needs {rules.baseline_min_requests} with a value"
    if value is None and not note:
        note = "no value: no turns recorded it"
    return GateResult(gate.name, gate.title, gate.operator, gate.unit, value, threshold, base, check(value, gate.operator, threshold), note)


def judge_sample(minute: datetime, aggregate: Aggregate, baseline: Aggregate, config: GatesConfig) -> SampleResult:
    """Failed if any gate fails; inconclusive with too few turns or a gate without a value."""
    if aggregate.count < config.evaluation.sample_min_requests:
        return SampleResult(minute, aggregate.count, Verdict.INCONCLUSIVE)
    results = [judge(gate, aggregate, baseline, config.evaluation) for gate in config.gates]
    failed = tuple(r.title for r in results if r.verdict is Verdict.FAILED)
    if failed:
        verdict = Verdict.FAILED
    elif any(r.verdict is Verdict.INCONCLUSIVE for r in results):
        verdict = Verdict.INCONCLUSIVE
    else:
        verdict = Verdict.SUCCESSFUL
    return SampleResult(minute, aggregate.count, verdict, failed)


def hold_reasons(samples: list[SampleResult], gates: list[GateResult], requests: int, rules: Rules) -> list[str]:
    """Why the gates do not hold; empty when they do."""
    reasons = []
    taken = [s for s in samples if s.verdict is not Verdict.ERROR]
    if len(taken) < rules.hold_minutes:
        errors = {s.error for s in samples if s.error}
        detail = f" ({len(samples) - len(taken)} failed to query: {'; '.join(sorted(errors))})" if errors else ""
        reasons.append(f"{len(taken)} minutes of samples, holding needs {rules.hold_minutes}{detail}")
    if requests < rules.min_requests:
        reasons.append(f"{requests} candidate turns in the window, holding needs {rules.min_requests}")
    reasons += [_gate_reason(g) for g in gates if g.verdict is not Verdict.SUCCESSFUL]
    conclusive = [s for s in samples if s.verdict in (Verdict.SUCCESSFUL, Verdict.FAILED)][-rules.consecutive_samples :]
    if len(conclusive) < rules.consecutive_samples:
        reasons.append(f"{len(conclusive)} conclusive samples, the last {rules.consecutive_samples} must pass")
    elif failing := [s for s in conclusive if s.verdict is Verdict.FAILED]:
        where = ", ".join(f"{s.minute:%H:%M} ({', '.join(s.failed)})" for s in failing)
        reasons.append(f"the last {rules.consecutive_samples} conclusive samples did not all pass: {where}")
    run = _longest_failed_run(samples)
    if len(run) > rules.max_failed_run:
        failing = ", ".join(dict.fromkeys(title for s in run for title in s.failed))
        reasons.append(
            f"{len(run)} samples in a row failed, {run[0].minute:%H:%M} to {run[-1].minute:%H:%M} ({failing}); "
            f"at most {rules.max_failed_run} may"
        )
    return reasons


def _longest_failed_run(samples: list[SampleResult]) -> list[SampleResult]:
    """The longest run of failed samples; a success ends a run, anything else pauses it."""
    longest: list[SampleResult] = []
    current: list[SampleResult] = []
    for sample in samples:
        if sample.verdict is Verdict.FAILED:
            current.append(sample)
            longest = max(longest, current, key=len)
        elif sample.verdict is Verdict.SUCCESSFUL:
            current = []
    return longest


def _gate_reason(result: GateResult) -> str:
    if result.verdict is not Verdict.FAILED:
        return f"{result.title}: {result.verdict} ({result.note})"
    return f"{result.title}: {result.value:g} {result.unit} over the window, needs {result.operator} {result.threshold:g} {result.unit}"


# -- Evaluation (reads the telemetry) ----------------------------------------------


@dataclass(frozen=True)
class Evaluation:
    since: datetime
    until: datetime
    candidate: str
    requests: int
    baseline_requests: int
    gates: tuple[GateResult, ...]
    samples: tuple[SampleResult, ...]
    reasons: tuple[str, ...]

    @property
    def holding(self) -> bool:
        return not self.reasons


def parse_window(text: str) -> timedelta:
    """A window length such as ``60m`` or ``2h``: whole minutes, at least one."""
    length = parse_duration(text, "window")
    if length < MINUTE or length % MINUTE:
        raise WindowError("window", f"window: whole minutes, at least one; got {text!r}")
    return length


def evaluation_json(evaluation: Evaluation) -> dict[str, Any]:
    return {"holding": evaluation.holding, **as_json(evaluation)}


def evaluate(bind: Bind, config: GatesConfig, now: datetime, window: timedelta | None = None) -> Evaluation:
    """Judge the window of whole minutes that ends at or before ``now``."""
    rules = config.evaluation
    minutes = (window or rules.hold_minutes * MINUTE) // MINUTE
    until = as_utc(now).replace(second=0, microsecond=0)
    since = until - minutes * MINUTE
    ends = [since + (i + 1) * MINUTE for i in range(minutes)]
    spans = [(end - rules.sample_span_minutes * MINUTE, end) for end in ends]
    try:
        *per_sample, overall = span_aggregates(bind, [*spans, (since, until)], rules.candidate)
        baseline = window_aggregate(bind, since, until, rules.baseline)
    except sa.exc.SQLAlchemyError as exc:
        return _unreadable(since, until, ends, config, exc)
    samples = [judge_sample(end - MINUTE, agg, baseline, config) for end, agg in zip(ends, per_sample)]
    gates = [judge(gate, overall, baseline, rules) for gate in config.gates]
    reasons = hold_reasons(samples, gates, overall.count, rules)
    return Evaluation(since, until, rules.candidate, overall.count, baseline.count, tuple(gates), tuple(samples), tuple(reasons))


def _unreadable(since: datetime, until: datetime, ends: list[datetime], config: GatesConfig, exc: Exception) -> Evaluation:
    """Every sample an error: the telemetry could not be read."""
    error = f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}".splitlines()[0]
    samples = [SampleResult(end - MINUTE, 0, Verdict.ERROR, error=error) for end in ends]
    gates = [GateResult(g.name, g.title, g.operator, g.unit, None, None, None, Verdict.ERROR, error) for g in config.gates]
    reasons = [f"the telemetry could not be read: {error}"]
    return Evaluation(since, until, config.evaluation.candidate, 0, 0, tuple(gates), tuple(samples), tuple(reasons))

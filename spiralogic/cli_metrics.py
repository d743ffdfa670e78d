"""Operator commands over the telemetry: ``spiralogic metrics NAME`` and ``spiralogic gates``."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import click

from spiralogic import gates as promotion
from spiralogic import monitoring
from spiralogic.cli_support import with_app
from spiralogic.state import app_state
from spiralogic.turn import ORCHESTRATORS


@click.command()
@click.argument("name", type=click.Choice(list(monitoring.METRICS)))
@click.option("--since", help="Start: a duration before now (2h, 15m, 1d) or an ISO 8601 time. Default: the metric's own window.")
@click.option("--until", help="End: a duration before now or an ISO 8601 time. Default: now.")
@click.option("--orchestrator", type=click.Choice(ORCHESTRATORS), help="Only this orchestrator's turns.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@with_app
def metrics(app, name, since, until, orchestrator, as_json):
    """Query the turn telemetry: the playbook's monitoring queries and more.

    \b
    latency      P50/P95/P99 latency per minute (default window 2h)
    modes        turns per mode, with percentages (1d)
    cache        cache hit ratio per hour (24h)
    errors       error rate per minute (1h)
    first-token  first-token P95 per minute (1h)
    fallback     fallback rate per minute (1h)
    challenges   challenge acceptance rate (1d)
    worldview    worldview shares and consistency with the user's previous one (1d)
    tokens       tokens per response, by orchestrator (1d)
    quality      mean quality score, by orchestrator (1d)
    """
    try:
        start, end = monitoring.resolve_window(name, since, until, datetime.now(timezone.utc))
    except monitoring.WindowError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field}") from None
    result = monitoring.as_json(monitoring.METRICS[name].query(app_state(app).engine, start, end, orchestrator))
    if as_json:
        click.echo(json.dumps({"metric": name, "since": start.isoformat(), "until": end.isoformat(), "result": result}, indent=2))
        return
    click.echo(f"{name}: {start:%Y-%m-%d %H:%M:%S} to {end:%Y-%m-%d %H:%M:%S} UTC" + (f", {orchestrator}" if orchestrator else ""))
    _echo_result(result)


@click.command()
@click.option("--window", default=None, help="How far back to judge (e.g. 60m, 2h). Default: hold_minutes from config/gates.toml.")
@click.option("--until", help="Judge the window ending then (a duration before now or an ISO 8601 time). Default: now.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@with_app
def gates(app, window, until, as_json):
    """Judge the playbook's promotion gates; exit 0 when they hold, 1 when not."""
    config = promotion.load_gates()
    now = datetime.now(timezone.utc)
    try:
        length = promotion.parse_window(window) if window else None
        end = monitoring.parse_moment(until, now, "until") if until else now
    except monitoring.WindowError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.field}") from None
    evaluation = promotion.evaluate(app_state(app).engine, config, end, length)
    if as_json:
        click.echo(json.dumps(promotion.evaluation_json(evaluation), indent=2))
    else:
        _echo_evaluation(evaluation)
    raise SystemExit(0 if evaluation.holding else 1)


def _echo_evaluation(evaluation: promotion.Evaluation) -> None:
    tally = {verdict: 0 for verdict in promotion.Verdict}
    for sample in evaluation.samples:
        tally[sample.verdict] += 1
    click.echo(
        f"Promotion gates for {evaluation.candidate}, {evaluation.since:%Y-%m-%d %H:%M} to {evaluation.until:%Y-%m-%d %H:%M} UTC: "
        f"{evaluation.requests} turns ({evaluation.baseline_requests} baseline); {len(evaluation.samples)} samples: "
        + ", ".join(f"{n} {verdict}" for verdict, n in tally.items())
    )
    click.echo()
    rows = [
        {
            "gate": g.title,
            "value": _measure(g.value, g.unit),
            "threshold": f"{g.operator} {_measure(g.threshold, g.unit)}" + _relative(g),
            "verdict": g.verdict,
            "failed samples": sum(g.title in s.failed for s in evaluation.samples),
        }
        for g in evaluation.gates
    ]
    _echo_table(rows)
    click.echo()
    if evaluation.holding:
        click.echo("HOLD")
        return
    click.echo("NOT HOLDING")
    for reason in evaluation.reasons:
        click.echo(f"  - {reason}")


def _measure(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{_cell(value)} {unit}".strip()


def _relative(gate: promotion.GateResult) -> str:
    """How a relative threshold came about: the baseline cohort's value and the offset."""
    if gate.baseline is None or gate.threshold is None:
        return ""
    return f" (baseline {_cell(gate.baseline)} {gate.threshold - gate.baseline:+g})"


def _echo_result(result: Any) -> None:
    """A list of rows as a table; an object's plain values as lines, its lists as tables."""
    if isinstance(result, list):
        _echo_table(result)
        return
    for key, value in result.items():
        if not isinstance(value, list):
            click.echo(f"{key}: {_cell(value)}")
    for key, value in result.items():
        if isinstance(value, list):
            click.echo(f"\n{key}:")
            _echo_table(value)


def _echo_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("(none)")
        return
    columns = list(rows[0])
    cells = [[_cell(row[column]) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    for line in [columns, *cells]:
        click.echo("  ".join(text.ljust(width) for text, width in zip(line, widths)).rstrip())


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)

"""Operator commands for the service mode: ``spiralogic mode ...`` and ``spiralogic watch``."""

from __future__ import annotations

import json
import time

import click

from spiralogic.cli_support import operator, with_app
from spiralogic.clock import utcnow
from spiralogic.state import app_state
from spiralogic.turn import MODES


@click.group()
def mode():
    """Show or steer the service mode (full, lite, fallback)."""


@mode.command("status")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@with_app
def status(app, as_json):
    """The current mode, why and since when, the operator switches and recent transitions."""
    state = app_state(app)
    current = state.modes.state()
    report = {
        "mode": current.mode,
        "reason": current.reason,
        "since": current.since.isoformat() if current.since else None,
        "flags": state.flags.all(fresh=True),
        "transitions": [{**row, "at": row["at"].isoformat()} for row in state.modes.transitions(10)],
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"mode: {report['mode']} since {report['since'] or '(start)'}: {report['reason']}")
    click.echo(f"forced mode: {report['flags']['forced_mode'] or 'none'}; lite by default: {report['flags']['lite_by_default']}")
    for row in report["transitions"]:
        click.echo(f"  {row['at']}  {row['from_mode']} -> {row['to_mode']}  by {row['actor']}: {row['reason']}")


@mode.command("force")
@click.argument("target", type=click.Choice([*MODES, "off"]))
@click.option("--reason", required=True, help="Why, for the audit trail.")
@with_app
def force(app, target, reason):
    """Start every turn in TARGET mode until 'force off'."""
    app_state(app).flags.set("forced_mode", None if target == "off" else target, actor=operator(), reason=reason, now=utcnow())
    click.echo(f"forced mode: {target}")


@mode.command("lite-by-default")
@click.argument("switch", type=click.Choice(["on", "off"]))
@click.option("--reason", required=True, help="Why, for the audit trail.")
@with_app
def lite_by_default(app, switch, reason):
    """Start turns in lite even when the service is in full (the playbook's latency-spike step)."""
    app_state(app).flags.set("lite_by_default", switch == "on", actor=operator(), reason=reason, now=utcnow())
    click.echo(f"lite by default: {switch}")


@mode.command("set")
@click.argument("target", type=click.Choice(MODES))
@click.option("--reason", required=True, help="Why, for the audit trail.")
@with_app
def set_mode(app, target, reason):
    """Move the service mode now; the controller takes over again from there."""
    app_state(app).modes.transition(target, reason, actor=operator(), now=utcnow())
    click.echo(f"service mode: {target}")


@click.command()
@click.option("--once", is_flag=True, help="Run one round and exit.")
@with_app
def watch(app, once):
    """Run the evaluator loop (mode controller) in the foreground.

    Safe to run beside servers that run it too: a database lease lets one
    evaluate at a time.
    """
    evaluator = app_state(app).evaluator
    while True:
        evaluated = evaluator.run_once()
        click.echo(f"{utcnow().isoformat()} {'evaluated' if evaluated else 'another runner holds the lease'}")
        if once:
            return
        time.sleep(evaluator.interval_s)

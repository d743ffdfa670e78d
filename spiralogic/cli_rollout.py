"""``spiralogic rollout``: the canary -> beta -> GA moves, each audited."""

from __future__ import annotations

import json

import click

from spiralogic.cli_support import operator, with_app
from spiralogic.clock import utcnow
from spiralogic.rollout import Move, RolloutRefused
from spiralogic.state import app_state

REASON = click.option("--reason", required=True, help="Why, for the audit trail.")


@click.group()
def rollout():
    """Show or move the rollout: status, promote, abort, retry, set-percent, kill, unkill."""


def _apply(app, action, reason: str) -> None:
    control = app_state(app).rollout
    try:
        result = action(control, Move(operator(), reason, utcnow()))
    except RolloutRefused as exc:
        raise click.ClickException("refused: " + "; ".join(exc.reasons)) from None
    status = control.status()
    click.echo(f"phase: {status['phase']}, percent: {status['percent']}, kill switch: {status['killSwitch']}" + (f" ({result})" if result else ""))


@rollout.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@with_app
def status(app, as_json):
    """Phase, cohort percent, kill switch and the recent audited changes."""
    report = app_state(app).rollout.status()
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    click.echo(f"phase: {report['phase']}, percent: {report['percent']}, kill switch: {report['killSwitch']}")
    for change in report["history"]:
        click.echo(f"  {change['at']}  {change['key']} = {change['value']!r}  by {change['actor']}: {change['reason']}")


@rollout.command()
@REASON
@click.option("--force", is_flag=True, help="Promote even though the gates do not hold (say why).")
@with_app
def promote(app, reason, force):
    """Move to the next phase, only while the promotion gates hold."""
    _apply(app, lambda control, move: control.promote(move, force=force), reason)


@rollout.command()
@REASON
@with_app
def abort(app, reason):
    """Send everyone to baseline (the header still works) until retry."""
    _apply(app, lambda control, move: control.abort(move), reason)


@rollout.command()
@REASON
@with_app
def retry(app, reason):
    """Leave an aborted rollout for the phase it was in before."""
    _apply(app, lambda control, move: control.retry(move), reason)


@rollout.command("set-percent")
@click.argument("percent", type=click.FloatRange(0, 100))
@REASON
@with_app
def set_percent(app, percent, reason):
    """Set the cohort percent (raising it only adds users)."""
    _apply(app, lambda control, move: control.set_percent(percent, move), reason)


@rollout.command()
@REASON
@with_app
def kill(app, reason):
    """The kill switch: everyone on baseline, header or not."""
    _apply(app, lambda control, move: control.kill(move, True), reason)


@rollout.command()
@REASON
@with_app
def unkill(app, reason):
    """Release the kill switch."""
    _apply(app, lambda control, move: control.kill(move, False), reason)

"""The voice worker: ``spiralogic voice-worker``, the process that synthesizes speech."""

from __future__ import annotations

import json
import logging

import click
from sqlalchemy.engine import make_url

from spiralogic.cli_support import with_app
from spiralogic.clock import utcnow
from spiralogic.components import ComponentUnavailable
from spiralogic.settings import ConfigError
from spiralogic.state import app_state
from spiralogic.voice.queue import QUEUE_FILE
from spiralogic.voice.service import voice_service
from spiralogic.voice.worker import VoiceWorker


@click.command("voice-worker")
@click.option("--drain", is_flag=True, help="Run the jobs that are due now, then exit.")
@click.option("--status", "show_status", is_flag=True, help="Print the queue's health and today's synthesis and cost, then exit.")
@click.option("--json", "as_json", is_flag=True, help="With --status: machine-readable output.")
@with_app
def voice_worker(app, drain, show_status, as_json):
    """Synthesize queued voice jobs until SIGINT (finishes the jobs in hand) or SIGTERM.

    Run one or more beside the web servers, on any host that reaches the
    database and the broker ([voice] broker_url; empty: a SQLite file in
    data_dir, so the worker must share that directory). Jobs survive a
    crash: another worker takes them over once their lease lapses.
    """
    worker = VoiceWorker(voice_service(app), app_state(app).registries["voice_backends"], clock=utcnow)
    if show_status:
        _print_status(worker, as_json)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if drain:
            click.echo(f"voice jobs handled: {worker.drain()}")
            return
        worker.run()
    except ComponentUnavailable as exc:
        raise ConfigError(f"invalid configuration: voice.backend: {exc}") from None


def _print_status(worker: VoiceWorker, as_json: bool) -> None:
    reading = worker.service.health.read(fresh=True)
    config = worker.config
    broker = make_url(config.broker_url).render_as_string(hide_password=True) if config.broker_url else str(config.data_dir / QUEUE_FILE)
    report = {
        "backend": config.backend,
        "broker": broker,
        "depth": reading.depth,
        "ageP95Ms": reading.age_p95_ms,
        "tagsEnabled": reading.tags_enabled,
        "today": worker.daily_spend(utcnow().date()),
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    today = report["today"]
    click.echo(f"backend: {report['backend']}  broker: {report['broker']}")
    tags = "on" if reading.tags_enabled else "off"
    click.echo(f"queued: {reading.depth}  queue age P95: {reading.age_p95_ms} ms  expressive tags: {tags}")
    click.echo(f"today ({today['day']}): ${today['cost_usd']:.4f} of ${today['budget_usd']:.2f} budget")
    for row in today["backends"]:
        click.echo(f"  {row['backend']}: {row['jobs']} jobs, {row['chars']} characters synthesized, ${row['cost_usd']:.4f}")

"""The operator's console: ``spiralogic --help``."""

from __future__ import annotations

import importlib
import json
import sys

import click

from spiralogic.cli_support import with_app
from spiralogic.settings import ConfigError, database_url, load_settings

#: command -> "module:attribute", imported only when that command runs (or --help lists it)
OPERATOR_COMMANDS = {
    "mode": "spiralogic.cli_modes:mode",
    "watch": "spiralogic.cli_modes:watch",
    "rollout": "spiralogic.cli_rollout:rollout",
    "gates": "spiralogic.cli_metrics:gates",
    "metrics": "spiralogic.cli_metrics:metrics",
    "cache": "spiralogic.cli_cache:cache",
    "voice-worker": "spiralogic.cli_voice:voice_worker",
}


class LazyGroup(click.Group):
    """Imports a command's module only when it is needed.

    ``spiralogic serve`` must not import the database drivers (through huey, say)
    in gunicorn's master: psycopg picks its wait function at import, and one
    picked before gevent patches the workers blocks their event loops.
    """

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *OPERATOR_COMMANDS])

    def get_command(self, ctx, name):
        if name in OPERATOR_COMMANDS:
            module, attribute = OPERATOR_COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli():
    """Spiralogic: serve the oracle chat API and operate its rollout.

    Settings come from config/settings.toml, the environment named by
    SPIRALOGIC_ENV, and environment variables (see docs/configuration.md).
    """


@cli.command()
@click.option("--host", help="Interface to bind (default: server.host).")
@click.option("--port", type=int, help="Port to bind (default: server.port).")
@click.option("--workers", type=int, help="gunicorn worker processes (default: server.workers).")
def serve(host, port, workers):
    """Serve the API with gunicorn and gevent workers."""
    from spiralogic.serve import SpiralogicServer, gunicorn_options

    SpiralogicServer(gunicorn_options(load_settings(), host, port, workers)).run()


@cli.group()
def db():
    """Database schema commands."""


@db.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision):
    """Apply migrations to the configured database (SQLite by default)."""
    from spiralogic.migrate import upgrade as apply

    url = database_url(load_settings())
    apply(url, revision)
    click.echo(f"database at revision {revision}: {_safe_url(url)}")


@db.command()
def current():
    """Show the database's migration revision."""
    from spiralogic.migrate import current_revision

    click.echo(current_revision(database_url(load_settings())) or "(empty database)")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@with_app
def plugins(app, as_json):
    """List loaded plugins, where they come from, their hooks and components."""
    from spiralogic.plugins import describe_plugins
    from spiralogic.state import app_state

    state = app_state(app)
    owned = {}
    for family, registry in state.registries.items():
        for component_id in registry.ids():
            owned.setdefault(registry.owner(component_id), []).append(f"{family}:{component_id}")
    rows = [
        {"name": p.name, "module": p.source, "version": p.version, "hooks": list(p.hooks), "components": owned.get(p.name, [])}
        for p in describe_plugins(state.pm)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}  ({row['module']} {row['version'] or ''})".rstrip())
        click.echo(f"    hooks: {', '.join(row['hooks'])}")
        if row["components"]:
            click.echo(f"    provides: {', '.join(row['components'])}")


@cli.command()
@with_app
def routes(app):
    """List the HTTP routes."""
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        methods = ",".join(sorted(rule.methods - {"HEAD", "OPTIONS"}))
        click.echo(f"{methods:<10} {rule.rule}")


def _safe_url(url: str) -> str:
    """The URL without its password, fit for a terminal or a log."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)




def main() -> None:
    from sqlalchemy.exc import OperationalError

    try:
        cli.main(prog_name="spiralogic")
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    except OperationalError as exc:
        # An operator mid-incident needs the cause in one line, not a driver traceback.
        click.echo(f"database unavailable: {str(exc.orig).strip().splitlines()[0] if exc.orig else exc}", err=True)
        sys.exit(3)

"""Operator commands for the memo cache: ``spiralogic cache ...``."""

from __future__ import annotations

import click

from spiralogic import memo
from spiralogic.cli_support import with_app
from spiralogic.state import app_state


@click.group()
def cache():
    """The memo cache (memoized archetype fusion)."""


@cache.command("clear")
@with_app
def clear(app):
    """Drop every memoized result and say how many there were.

    Needs the shared cache (CACHE_REDIS_URL). Without it each server worker
    keeps its own in-process cache, out of this command's reach.
    """
    state = app_state(app)
    if not state.settings.cache_redis_url:
        raise click.ClickException(
            "no shared cache configured (CACHE_REDIS_URL): each server worker keeps its own; "
            "POST /admin/cache/clear purges the worker that answers it, a restart purges them all"
        )
    try:
        dropped = memo.clear(state.cache)
    except memo.CacheUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"dropped {dropped} memoized entries")

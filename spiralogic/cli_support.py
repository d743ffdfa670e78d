"""What the CLI's command modules share."""

from __future__ import annotations

import getpass
from functools import wraps


def with_app(command):
    """Build the app (settings, plugins, database) for commands that need it; pass it first."""

    @wraps(command)
    def run(*args, **kwargs):
        from spiralogic.app import create_app

        app = create_app()
        with app.app_context():
            return command(app, *args, **kwargs)

    return run


def operator() -> str:
    """Who runs this command, for the audit trail."""
    return f"operator:{getpass.getuser()}"

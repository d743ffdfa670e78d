"""Spiralogic: a chat service that launches a new conversational mind safely.

Plugins import ``hookimpl`` from here; the app is built by ``create_app``.
"""

from spiralogic.hookspecs import hookimpl

__all__ = ["create_app", "hookimpl"]


def create_app(overrides=None, plugins=()):
    """Build the Flask app (see :func:`spiralogic.app.create_app`)."""
    from spiralogic.app import create_app as build

    return build(overrides, plugins)

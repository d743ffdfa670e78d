"""Where the ``spiralogic`` loggers write, and in what shape.

One line per record on stderr: a JSON object in production (timestamp, level,
logger, message, the request id when a request is being handled, and any
``extra=`` fields), plain text in development. Only the app's loggers (the core
and its built-in plugins) are configured: the root logger belongs to whoever
hosts the app (gunicorn, pytest's log capture), and records still propagate to it.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import Callable

from flask import Flask, Response
from pythonjsonlogger.json import JsonFormatter

LOGGERS = ("spiralogic", "spiralogic_plugins")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"

# Per greenlet (gevent keeps contextvars per greenlet), so concurrent turns never see each other's id.
REQUEST_ID: ContextVar[str | None] = ContextVar("spiralogic_request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Stamps the id of the request being handled, if any, on each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
        return True


class StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record: gunicorn and pytest replace it after start-up."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        """StreamHandler assigns its stream on construction; this handler has none of its own."""


def configure(level: str, log_format: str) -> None:
    """Install one stderr handler on the app's loggers, replacing an earlier app's."""
    handler = StderrHandler()
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(RequestIdFilter())
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for old in [h for h in logger.handlers if isinstance(h, StderrHandler)]:
            logger.removeHandler(old)
        logger.addHandler(handler)


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter(
            "{levelname}{name}{message}",
            style="{",
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp=True,
        )
    return logging.Formatter(TEXT_FORMAT, defaults={"request_id": "-"})


def init_app(app: Flask, make_request_id: Callable[[], str]) -> None:
    """Bind each request's id for the whole of its handling, streamed body included."""

    @app.before_request
    def bind_request_id() -> None:
        REQUEST_ID.set(make_request_id())

    @app.after_request
    def unbind_when_sent(response: Response) -> Response:
        # Not at teardown: a streamed answer is still being produced after the view returns.
        response.call_on_close(lambda: REQUEST_ID.set(None))
        return response


def current_request_id() -> str:
    """The id bound for the request being handled (only valid inside one)."""
    request_id = REQUEST_ID.get()
    if request_id is None:
        raise RuntimeError("no request is being handled")
    return request_id

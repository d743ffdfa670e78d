"""Runs the app under gunicorn with gevent workers, configured from settings.

Each worker builds its own app after gevent has patched the standard library
(no preloading), so every socket and lock the app creates is cooperative.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from spiralogic.settings import data_dir


class SpiralogicServer(BaseApplication):
    def __init__(self, options: dict[str, Any]):
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from spiralogic import create_app

        return create_app()


def gunicorn_options(settings, host: str | None = None, port: int | None = None, workers: int | None = None) -> dict[str, Any]:
    return {
        "bind": f"{host or settings.server.host}:{port or settings.server.port}",
        "workers": workers or settings.server.workers,
        "worker_class": "gevent",
        "worker_connections": settings.server.worker_connections,
        # A turn never takes longer than its hard budget; this only catches a stuck worker.
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        "worker_exit": _flush_telemetry,
        # One control socket per data directory: two servers on a host must not share one.
        "control_socket": str(data_dir(settings) / "gunicorn.ctl"),
    }


def _flush_telemetry(server, worker) -> None:
    """Drain buffered telemetry before a worker goes (graceful restarts lose nothing)."""
    from spiralogic.state import app_state

    app = getattr(worker, "wsgi", None)
    if app is not None:
        app_state(app).telemetry.close()

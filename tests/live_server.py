"""A real gunicorn server (gevent workers) in a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

SPIRALOGIC = str(Path(sys.executable).with_name("spiralogic"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``spiralogic db upgrade`` then ``spiralogic serve`` with the given environment."""

    def __init__(self, tmp_path: Path, database_url: str, workers: int = 1, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / f"server-{self.port}.log"
        self.env = {
            **os.environ,
            "SPIRALOGIC_ENV": "testing",
            "DATABASE_URL": database_url,
            "SPIRALOGIC_DATA_DIR": str(tmp_path / "data"),
            **(env or {}),
        }
        self.workers = workers
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LiveServer:
        subprocess.run([SPIRALOGIC, "db", "upgrade"], env=self.env, check=True, capture_output=True)
        self._log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [SPIRALOGIC, "serve", "--port", str(self.port), "--workers", str(self.workers)],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # __exit__ will not run: a server that never got ready must not outlive the test
            raise
        return self

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout}s:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        """Graceful stop (SIGTERM), as an orchestrator would do it."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._log.close()

    def __exit__(self, *exc) -> None:
        self.stop()

"""Start and stop the servers under test: Spiralogic itself and the floor app.

Each server runs in a process group of its own (gunicorn master plus workers),
so teardown can end the whole group by its id. On Linux the master is also
told to receive SIGTERM if the bench dies without cleaning up.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

LOAD_DIR = Path(__file__).resolve().parent
SPIRALOGIC = str(Path(sys.executable).with_name("spiralogic"))
PR_SET_PDEATHSIG = 1


class ServerStartError(RuntimeError):
    """A server did not come up; the message ends with the tail of its log."""


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def die_with_parent() -> None:
    # Runs in the child before exec: a new session (own process group), and SIGTERM when we go.
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _spawn(name: str, argv: list[str], env: dict[str, str], log_path: Path, port: int) -> Server:
    log = log_path.open("w")
    try:
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    finally:
        log.close()  # the child holds its own copy
    return Server(name, port, process, log_path)


def wait_ready(server: Server, path: str, timeout: float, need_ok: bool) -> None:
    """Poll ``path`` until it answers (200 when ``need_ok``); fail fast if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerStartError(f"{server.name} exited with {server.process.returncode} while starting:\n{log_tail(server.log_path)}")
        try:
            with urllib.request.urlopen(server.url + path, timeout=1) as response:
                if response.status == 200 or not need_ok:
                    return
        except urllib.error.HTTPError as exc:
            if not need_ok:
                return
            exc.close()
        except OSError:
            pass
        time.sleep(0.2)
    raise ServerStartError(f"{server.name} not ready after {timeout:.0f}s on {server.url}{path}:\n{log_tail(server.log_path)}")


def migrate(env: dict[str, str], log_path: Path, timeout: float) -> None:
    """``spiralogic db upgrade`` with the server's environment."""
    try:
        done = subprocess.run([SPIRALOGIC, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ServerStartError(f"spiralogic db upgrade did not finish in {timeout:.0f}s") from None
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise ServerStartError(f"spiralogic db upgrade failed ({done.returncode}):\n{log_tail(log_path)}")


def start_spiralogic(env: dict[str, str], workers: int, log_dir: Path, timeout: float) -> Server:
    migrate(env, log_dir / "migrate.log", timeout)
    port = free_port()
    argv = [SPIRALOGIC, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    server = _spawn("spiralogic", argv, env, log_dir / "spiralogic.log", port)
    return _ready_or_stopped(server, "/readyz", timeout, need_ok=True)


def start_floor(workers: int, p50_ms: float, p95_ms: float, log_dir: Path, timeout: float) -> Server:
    port = free_port()
    env = {**os.environ, "FLOOR_P50_MS": str(p50_ms), "FLOOR_P95_MS": str(p95_ms)}
    # The same gunicorn settings as spiralogic/serve.py, so only the app differs.
    argv = [
        sys.executable, "-m", "gunicorn",
        "--worker-class", "gevent", "--workers", str(workers), "--worker-connections", "1000",
        "--timeout", "30", "--graceful-timeout", "20", "--keep-alive", "5",
        "--no-control-socket",  # gunicorn 27 default path is shared by every master on the host
        "--bind", f"127.0.0.1:{port}", "--chdir", str(LOAD_DIR), "floor_app:app",
    ]  # fmt: skip
    server = _spawn("floor", argv, env, log_dir / "floor.log", port)
    # The floor has a single endpoint: any HTTP answer (405 to a GET) means it is up.
    return _ready_or_stopped(server, "/api/oracle/chat", timeout, need_ok=False)


def _ready_or_stopped(server: Server, path: str, timeout: float, need_ok: bool) -> Server:
    """The server once ready; a server that failed to start is stopped before the error leaves."""
    try:
        wait_ready(server, path, timeout, need_ok)
    except BaseException:
        stop(server)
        raise
    return server


def stop(server: Server, grace: float = 10.0) -> None:
    """SIGTERM the server's process group, SIGKILL it if it is not gone after ``grace`` seconds.

    A gunicorn master exits only after its workers, so a master that ended on
    time leaves no process of the group behind.
    """
    process = server.process
    if process.poll() is not None:
        return
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
        return
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process.pid, signal.SIGKILL)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass

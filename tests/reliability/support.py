"""What the fault tests share: traffic against a real server, what the database
holds afterwards, the server's workers and journals, and the count lines."""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import httpx
import sqlalchemy as sa
from live_server import LiveServer

from spiralogic.journal import Journal

BODY = {"text": "Help me find clarity", "element": "air"}
#: the statuses that answer each kind of request (anything else, or no answer, is not answered)
ANSWERS = {"turn": {200}, "rating": {201, 202}}
#: how long a client whose connection was refused waits before it tries again (s)
REFUSED_BACKOFF_S = 0.2
#: The faults here are the database and signals, not a starved CPU: on a shared machine a
#: neighbour's load can lag a worker's event loop past admission's shedding point (503
#: overloaded, tested in tests/test_budgets_server.py), so these servers shed only past 10 s.
SERVER_ENV = {"SPIRALOGIC_ADMISSION__REJECT_LAG_MS": "10000"}


@dataclass
class Sent:
    kind: str  # "turn" or "rating"
    status: int  # 0: no answer at all (connection refused or cut)
    turn_id: str | None  # the turn answered, or the turn rated
    user: str
    started: float  # time.monotonic()
    seconds: float
    error: str | None = None  # the error code of an answer with one
    phase: str = ""

    @property
    def answered(self) -> bool:
        return self.status in ANSWERS[self.kind]

    @property
    def ended(self) -> float:
        return self.started + self.seconds


def server(tmp_path: Path, database_url: str, **env: str) -> LiveServer:
    """A real gunicorn server with two gevent workers, as the faults run it."""
    return LiveServer(tmp_path, database_url, workers=2, env={**SERVER_ENV, **env})


class Client:
    """Chat turns and ratings, each on a new connection so that they spread over the workers."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))

    def turn(self, user: str) -> Sent:
        return self._post("turn", "/api/oracle/chat", {**BODY, "userId": user}, user)

    def rate(self, turn: Sent) -> Sent:
        return self._post("rating", "/api/oracle/feedback", {"userId": turn.user, "turnId": turn.turn_id, "rating": 4}, turn.user, turn.turn_id)

    def _post(self, kind: str, path: str, body: dict, user: str, turn_id: str | None = None) -> Sent:
        started = time.monotonic()
        try:
            response = self.http.post(path, json=body)
        except httpx.TransportError as exc:
            return Sent(kind, 0, turn_id, user, started, time.monotonic() - started, exc.__class__.__name__)
        seconds = time.monotonic() - started
        payload = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        turn_id = turn_id or payload.get("data", {}).get("turnId")
        return Sent(kind, response.status_code, turn_id, user, started, seconds, payload.get("error", {}).get("code"))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def send_turns(url: str, count: int, threads: int = 4) -> list[Sent]:
    with Client(url) as client, ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: client.turn(f"u{i}"), range(count)))


def rate_turns(url: str, turns: Iterable[Sent], threads: int = 4) -> list[Sent]:
    """Rate each answered turn once, as its user."""
    with Client(url) as client, ThreadPoolExecutor(threads) as pool:
        return list(pool.map(client.rate, [turn for turn in turns if turn.answered]))


def answered(sent: Iterable[Sent]) -> list[str]:
    return [request.turn_id for request in sent if request.answered]


def unanswered(sent: Iterable[Sent]) -> Counter:
    """How many requests got each wrong answer: (status, error code) -> count."""
    return Counter((request.status, request.error) for request in sent if not request.answered)


class Load:
    """``clients`` threads sending chat turns until stopped, ``pause`` seconds apart (longer
    after a refused connection); every ``rate_every``-th request rates the oldest answered
    turn not rated yet instead.
    Each request is tagged with the ``phase`` the test was in when it was sent."""

    def __init__(self, url: str, clients: int = 4, rate_every: int = 3, pause: float = 0.01):
        self.url = url
        self.rate_every = rate_every
        self.pause = pause
        self.phase = ""
        self.sent: list[Sent] = []
        self._unrated: list[Sent] = []
        self._numbers = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"load-{i}", daemon=True) for i in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def of(self, kind: str, phase: str | None = None) -> list[Sent]:
        with self._lock:
            return [sent for sent in self.sent if sent.kind == kind and phase in (None, sent.phase)]

    def _run(self) -> None:
        with Client(self.url) as client:
            while not self._stop.is_set():
                phase = self.phase
                with self._lock:
                    number = next(self._numbers)
                    target = self._unrated.pop(0) if number % self.rate_every == 0 and self._unrated else None
                sent = client.rate(target) if target else client.turn(f"u{number}")
                sent.phase = phase
                with self._lock:
                    self.sent.append(sent)
                    if sent.kind == "turn" and sent.answered:
                        self._unrated.append(sent)
                self._stop.wait(self.pause if sent.status else REFUSED_BACKOFF_S)


def stored_ids(database_url: str) -> list[str]:
    """Every turn row's id, read straight from the database (never through the proxy)."""
    return _uuids(database_url, "SELECT id FROM consciousness_turn_meta")


def rated_turn_ids(database_url: str) -> list[str]:
    """The turn of every stored rating."""
    return _uuids(database_url, "SELECT turn_id FROM feedback")


def _uuids(database_url: str, query: str) -> list[str]:
    """One column of UUIDs, in their usual form (SQLite keeps them as bare hex)."""
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return [str(uuid.UUID(str(value))) for value in conn.execute(sa.text(query)).scalars()]
    finally:
        engine.dispose()


def worker_pids(master: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == master:
                pids.add(int(entry.name))
    return pids


def journals(tmp_path: Path) -> dict[str, Journal]:
    """The server's telemetry and feedback journals (LiveServer's data directory)."""
    return {name: Journal(tmp_path / "data" / f"{name}-journal") for name in ("telemetry", "feedback")}


def journals_empty(tmp_path: Path) -> bool:
    return all(journal.is_empty() for journal in journals(tmp_path).values())


def rows_written_by(journal: Journal, pid: int) -> int:
    """Rows in the journal files process ``pid`` wrote, whether a replay has claimed them or not."""
    while True:
        try:
            return sum(len(path.read_text().splitlines()) for path in journal.directory.glob(f"{pid}-*"))
        except FileNotFoundError:
            continue  # renamed by a replay between the listing and the read: count again


@dataclass
class Counts:
    """One kind of request in one fault: sent, answered, stored, and lost (answered, not stored)."""

    kind: str
    sent: int
    answered: int
    stored: int
    lost: int
    detail: str = ""

    @classmethod
    def of(cls, kind: str, sent: Iterable[Sent], stored: Iterable[str], detail: str = "") -> Counts:
        mine = [request for request in sent if request.kind == kind]
        ids = set(answered(mine))
        rows = set(stored)
        return cls(kind, len(mine), len(answered(mine)), len(rows), len(ids - rows), detail)

    def __str__(self) -> str:
        line = f"{self.kind}s sent {self.sent}, answered {self.answered}, stored {self.stored}, lost {self.lost}"
        return f"{line} ({self.detail})" if self.detail else line

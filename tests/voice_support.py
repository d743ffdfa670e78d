"""What the voice tests share: a settable clock, brokers, and a worker for an app."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fake_voice_apis import API_KEY, FakeSpeechServer
from huey import RedisHuey

from spiralogic.settings_env import PLAYBOOK_NAMES, SECRET_NAMES
from spiralogic.state import app_state
from spiralogic.voice.service import EXTENSION, VoiceService, build_service, voice_service
from spiralogic.voice.worker import VoiceWorker

REDIS_URL = "redis://127.0.0.1:6379/0"
SPIRALOGIC = Path(sys.executable).with_name("spiralogic")
#: the voice lease of real worker processes (s): short, so a lapsed job is taken over quickly
LEASE_S = 2
START = datetime(2026, 11, 27, 9, 0, tzinfo=timezone.utc)


@dataclass
class Clock:
    """A clock the test moves by hand."""

    now: datetime = field(default=START)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def with_clock(app, clock: Clock) -> VoiceService:
    """Give the app a voice service that reads ``clock``; the cached queue health is never reused."""
    service = build_service(app_state(app), clock)
    service.health.cache_s = 0
    app.extensions[EXTENSION] = service
    return service


def worker_for(app, clock=None) -> VoiceWorker:
    service = voice_service(app)
    return VoiceWorker(service, app_state(app).registries["voice_backends"], clock=clock or service.clock)


def broker_settings(broker: str) -> dict[str, str]:
    """Overrides for a fresh queue: the SQLite file in the app's data_dir, or a Redis queue of its own."""
    if broker == "sqlite":
        return {}
    return {"voice.broker_url": REDIS_URL, "voice.queue_name": f"test-voice-{uuid.uuid4().hex[:12]}"}


def drain_until(worker: VoiceWorker, job_id: str, statuses=("done", "failed"), timeout_s: float = 60.0) -> dict:
    """Run due jobs until ``job_id`` reaches one of ``statuses``; the job as the store has it."""
    deadline = time.monotonic() + timeout_s
    while True:
        worker.drain()
        job = worker.store.get(uuid.UUID(job_id))
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.05)


@pytest.fixture(params=["sqlite", "redis"])
def broker(request):
    """Settings for a fresh voice queue on each broker; a Redis queue is flushed afterwards."""
    settings = broker_settings(request.param)
    yield settings
    if settings:
        RedisHuey(settings["voice.queue_name"], url=REDIS_URL).flush()


# -- A real worker process ---------------------------------------------------------


@pytest.fixture
def speech_server():
    with FakeSpeechServer() as server:
        yield server


def elevenlabs(server: FakeSpeechServer) -> dict:
    return {"voice.backend": "elevenlabs", "plugins.elevenlabs.base_url": server.url, "plugins.elevenlabs.api_key": API_KEY}


def voiced_turn(app, user: str = "u") -> dict:
    response = app.test_client().post("/api/oracle/chat", json={"userId": user, "text": "Help me find clarity", "voice": True})
    return response.get_json()["data"]["voice"]


def worker_environment(app_settings: dict, database_url: str, data_dir: Path, server: FakeSpeechServer) -> dict[str, str]:
    ours = {**PLAYBOOK_NAMES, **SECRET_NAMES}
    env = {key: value for key, value in os.environ.items() if not key.startswith("SPIRALOGIC_") and key not in ours}
    env.update(
        SPIRALOGIC_ENV="testing",
        SPIRALOGIC_DATABASE_URL=database_url,
        SPIRALOGIC_DATA_DIR=str(data_dir),
        SPIRALOGIC_VOICE__BACKEND="elevenlabs",
        SPIRALOGIC_VOICE__LEASE_S=str(LEASE_S),
        SPIRALOGIC_PLUGINS__ELEVENLABS__BASE_URL=server.url,
        ELEVENLABS_API_KEY=API_KEY,
    )
    if "voice.broker_url" in app_settings:
        env.update(
            SPIRALOGIC_VOICE__BROKER_URL=app_settings["voice.broker_url"], SPIRALOGIC_VOICE__QUEUE_NAME=app_settings["voice.queue_name"]
        )
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([str(SPIRALOGIC), "voice-worker"], env=env, stdout=out, stderr=subprocess.STDOUT)

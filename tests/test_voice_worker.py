"""The voice worker on both brokers (a SQLite file, Redis): retries with backoff, a final failure
with its reason, and a worker killed mid-job whose job still completes exactly once."""

from __future__ import annotations

import signal
import time
import uuid

import pytest
from fake_voice_apis import fake_mp3
from voice_support import (  # noqa: F401 - broker and speech_server are fixtures
    LEASE_S,
    broker,
    drain_until,
    elevenlabs,
    speech_server,
    start_worker,
    voiced_turn,
    worker_environment,
    worker_for,
)

from spiralogic.voice.service import voice_service


def test_a_failing_backend_is_retried_with_a_doubling_backoff(make_app, broker, speech_server):
    app = make_app(**elevenlabs(speech_server), **broker, **{"voice.retry_backoff_s": 0.3})
    speech_server.script(503, 503)
    job = drain_until(worker_for(app), voiced_turn(app)["jobId"])
    assert (job["status"], job["attempts"], job["error"]) == ("done", 3, None)
    first, second, third = (seen.at for seen in speech_server.requests)
    assert second - first >= 0.3 * 0.9 and third - second >= 0.6 * 0.9


def test_a_job_that_never_succeeds_ends_failed_with_the_reason(make_app, broker, speech_server):
    app = make_app(**elevenlabs(speech_server), **broker, **{"voice.retry_backoff_s": 0.05, "voice.max_attempts": 3})
    speech_server.default = 503
    voice = voiced_turn(app)
    job = drain_until(worker_for(app), voice["jobId"])
    assert (job["status"], job["attempts"]) == ("failed", 3)
    assert "503" in job["error"]
    status = app.test_client().get(voice["url"]).get_json()["data"]
    assert status["status"] == "failed" and "503" in status["error"]
    assert app.test_client().get(voice["url"] + "?download=1").get_json()["error"]["code"] == "voice_failed"


def test_a_duplicate_delivery_of_a_finished_job_does_nothing(make_app, broker, speech_server):
    app = make_app(**elevenlabs(speech_server), **broker)
    voice = voiced_turn(app)
    worker = worker_for(app)
    done = drain_until(worker, voice["jobId"])
    voice_service(app).queue.enqueue(uuid.UUID(voice["jobId"]))
    assert worker.drain() == 1
    assert worker.store.get(uuid.UUID(voice["jobId"])) == done
    assert len(speech_server.requests) == 1


# -- A real worker process, killed mid-job -------------------------------------------


def wait_for(predicate, timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.parametrize(
    "broker, database_url",
    [pytest.param("sqlite", "sqlite", id="sqlite-broker-sqlite-db"), pytest.param("redis", "postgresql", id="redis-broker-postgresql-db")],
    indirect=True,
)
def test_a_job_survives_a_killed_worker_and_completes_exactly_once(make_app, broker, database_url, speech_server, tmp_path):
    data_dir = tmp_path / "data"
    app = make_app(database_url, **elevenlabs(speech_server), **broker, data_dir=str(data_dir))
    voice = voiced_turn(app, user="survivor")
    client = app.test_client()
    env = worker_environment(broker, database_url, data_dir, speech_server)
    log = tmp_path / "worker.log"

    speech_server.script("hold")  # the first synthesis is still in progress when the worker dies
    first = start_worker(env, log)
    try:
        speech_server.wait_for_requests(1)
        assert client.get(voice["url"]).get_json()["data"]["status"] == "running"
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        first.kill()
    speech_server.release()

    second = start_worker(env, log)
    try:
        wait_for(lambda: client.get(voice["url"]).get_json()["data"]["status"] == "done", what=f"the job; worker log:\n{log.read_text()}")
        done = client.get(voice["url"]).get_json()["data"]
        assert done["attempts"] == 2 and done["error"] is None
        assert client.get(voice["url"] + "?download=1").data == fake_mp3(speech_server.requests[-1].body["text"])
        # Nothing more happens to it: no third synthesis, the same finished job.
        time.sleep(LEASE_S * 1.5)
        assert client.get(voice["url"]).get_json()["data"] == done
        assert len(speech_server.requests) == 2
    finally:
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=30) == 0, log.read_text()

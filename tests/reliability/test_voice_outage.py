"""A voice job caught by a database outage: the worker cannot record its audio, and the job
still completes exactly once when the database returns (a real worker process, PostgreSQL
behind a TCP proxy, the Redis broker)."""

from __future__ import annotations

import signal
import time

import pytest
from fake_voice_apis import fake_mp3
from polling import wait_for
from voice_support import LEASE_S, broker, elevenlabs, speech_server, start_worker, voiced_turn, worker_environment  # noqa: F401 - broker and speech_server are fixtures

from .support import Counts

pytestmark = pytest.mark.server
OUTAGE_S = 8


@pytest.mark.parametrize("broker, database_url", [pytest.param("redis", "postgresql", id="redis-broker-postgresql-db")], indirect=True)
def test_a_voice_job_caught_by_an_outage_completes_once_the_database_returns(
    make_app, broker, database_url, proxy, speech_server, tmp_path, report
):
    data_dir = tmp_path / "data"
    app = make_app(database_url, **elevenlabs(speech_server), **broker, data_dir=str(data_dir))
    voice = voiced_turn(app, user="through-the-outage")
    assert voice["status"] == "queued"
    client = app.test_client()
    log = tmp_path / "worker.log"

    speech_server.script("hold")  # the synthesis is under way when the database goes
    worker = start_worker(worker_environment(broker, proxy.url_for(database_url), data_dir, speech_server), log)
    try:
        speech_server.wait_for_requests(1)
        proxy.cut()
        speech_server.release()  # the audio arrives with nowhere to store it
        time.sleep(OUTAGE_S)  # longer than the job's lease: it lapses while the database is away
        proxy.restore()

        def status() -> str:
            return client.get(voice["url"]).get_json()["data"]["status"]

        assert wait_for(lambda: status() == "done", timeout=60), f"job {status()}; worker log:\n{log.read_text()}"
        done = client.get(voice["url"]).get_json()["data"]
        assert done["error"] is None
        assert client.get(voice["url"] + "?download=1").data == fake_mp3(speech_server.requests[-1].body["text"])
        time.sleep(LEASE_S * 1.5)  # nothing more happens to it
        assert client.get(voice["url"]).get_json()["data"] == done
    finally:
        worker.send_signal(signal.SIGINT)
        worker.wait(timeout=30)
    report(
        f"voice job, database cut {OUTAGE_S} s mid-synthesis",
        Counts("voice job", 1, 1, 1, 0, f"{len(speech_server.requests)} syntheses, {done['attempts']} attempts"),
    )

"""The embedded voice end to end: a voiced chat queues a job, the worker speaks it with Piper,
and the job URL serves a WAV file that plays."""

from __future__ import annotations

import io
import wave

import pytest
from voice_support import drain_until, worker_for

CHAT = "/api/oracle/chat"


@pytest.fixture
def voiced_chat(app):
    client = app.test_client()
    response = client.post(CHAT, json={"userId": "listener", "text": "Help me find clarity in this decision", "voice": True})
    assert response.status_code == 200
    return client, response.get_json()["data"]


def test_a_voiced_chat_answers_at_once_with_a_queued_job(voiced_chat):
    client, data = voiced_chat
    voice = data["voice"]
    assert voice["status"] == "queued"
    assert voice["url"] == f"/api/oracle/voice/{voice['jobId']}"
    assert voice["preset"] == "natural" and voice["chars"] == len(data["message"])
    status = client.get(voice["url"])
    assert status.status_code == 200
    assert status.get_json()["data"]["status"] == "queued"
    assert status.get_json()["data"]["audio"] is None


def test_the_worker_speaks_it_and_the_wav_plays_for_a_plausible_time(app, voiced_chat):
    client, data = voiced_chat
    voice = data["voice"]
    drain_until(worker_for(app), voice["jobId"])
    status = client.get(voice["url"]).get_json()["data"]
    assert status["status"] == "done" and status["attempts"] == 1
    assert status["audio"]["contentType"] == "audio/wav"

    download = client.get(status["audio"]["url"])
    assert download.status_code == 200
    assert download.mimetype == "audio/wav"
    assert download.headers["Content-Disposition"] == f"attachment; filename=voice-{voice['jobId']}.wav"
    assert len(download.data) == status["audio"]["bytes"]
    with wave.open(io.BytesIO(download.data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 22050)
        seconds = wav.getnframes() / wav.getframerate()
    # Speech runs at roughly 10-20 characters a second.
    assert voice["chars"] / 30 < seconds < voice["chars"] / 5


def test_a_player_gets_the_audio_inline_with_ranges_and_revalidation(app, voiced_chat):
    client, data = voiced_chat
    url = data["voice"]["url"]
    drain_until(worker_for(app), data["voice"]["jobId"])
    inline = client.get(url, headers={"Accept": "audio/*"})
    assert inline.mimetype == "audio/wav" and inline.headers["Content-Disposition"].startswith("inline")
    assert "private" in inline.headers["Cache-Control"] and "public" not in inline.headers["Cache-Control"]
    part = client.get(url, headers={"Accept": "audio/wav", "Range": "bytes=0-99"})
    assert part.status_code == 206
    assert part.data == inline.data[:100]
    assert part.headers["Content-Range"] == f"bytes 0-99/{len(inline.data)}"
    again = client.get(url, headers={"Accept": "audio/wav", "If-None-Match": inline.headers["ETag"]})
    assert again.status_code == 304
    assert client.get(url, headers={"Accept": "application/json, audio/*;q=0.5"}).mimetype == "application/json"


def test_downloading_before_the_worker_ran_says_not_ready(voiced_chat):
    client, data = voiced_chat
    early = client.get(data["voice"]["url"] + "?download=1")
    assert early.status_code == 409
    assert early.headers["Retry-After"] == "2"
    assert early.get_json()["error"]["code"] == "voice_not_ready"


@pytest.mark.parametrize("job_id", ["6f1c2b7e-3a4d-4e5f-8a9b-0c1d2e3f4a5b", "not-a-job"], ids=["unknown-uuid", "not-a-uuid"])
def test_an_unknown_job_is_404_json(client, job_id):
    response = client.get(f"/api/oracle/voice/{job_id}")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_without_voice_nothing_is_queued(client):
    data = client.post(CHAT, json={"userId": "quiet", "text": "Help me find clarity"}).get_json()["data"]
    assert data["voice"] is None


def test_a_streamed_turn_queues_voice_too(client):
    body = {"userId": "s", "text": "Help me find clarity", "voice": True}
    response = client.post(CHAT, json=body, headers={"Accept": "text/event-stream"})
    done = response.get_data(as_text=True).split("event: done\ndata: ")[1]
    assert '"status":"queued"' in done

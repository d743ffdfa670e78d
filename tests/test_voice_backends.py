"""The ElevenLabs and OpenAI voice backends against a local server speaking their wire protocols,
and memoization: identical speech within the window is never synthesized twice."""

from __future__ import annotations

import io
import logging
import uuid
import wave

import openai
import pytest
from fake_voice_apis import API_KEY, FakeSpeechServer, fake_mp3
from voice_support import Clock, drain_until, with_clock, worker_for

from spiralogic.settings import ConfigError
from spiralogic.state import app_state
from spiralogic.voice import SynthesisRejected

TEXT = "Let's slow down. What matters most to you here?"


@pytest.fixture
def speech_server():
    with FakeSpeechServer() as server:
        yield server


@pytest.fixture
def elevenlabs_app(make_app, speech_server):
    def build(**overrides):
        settings = {"voice.backend": "elevenlabs", "plugins.elevenlabs.base_url": speech_server.url, "plugins.elevenlabs.api_key": API_KEY}
        return make_app(**{**settings, **overrides})

    return build


@pytest.fixture
def openai_app(make_app, speech_server):
    def build(**overrides):
        settings = {
            "voice.backend": "openai_tts",
            "plugins.openai_tts.base_url": f"{speech_server.url}/v1",
            "plugins.openai_tts.api_key": API_KEY,
        }
        return make_app(**{**settings, **overrides})

    return build


def backend(app, backend_id: str):
    return app_state(app).registries["voice_backends"].get(backend_id)


# -- ElevenLabs ------------------------------------------------------------------


def test_elevenlabs_speaks_its_wire_protocol(elevenlabs_app, speech_server):
    audio, content_type = backend(elevenlabs_app(), "elevenlabs").synthesize(TEXT, "natural")
    assert (audio, content_type) == (fake_mp3(TEXT), "audio/mpeg")
    [seen] = speech_server.requests
    assert seen.path == "/v1/text-to-speech/JBFqnCBsd6RMkjVDRZzb"
    assert seen.query == {"output_format": ["mp3_44100_128"]}
    assert seen.headers["xi-api-key"] == API_KEY
    assert seen.body["text"] == TEXT and seen.body["model_id"] == "eleven_multilingual_v2"
    assert seen.body["voice_settings"]["stability"] == 0.5


def test_elevenlabs_expressive_preset_uses_the_model_that_renders_tags(elevenlabs_app, speech_server):
    backend(elevenlabs_app(), "elevenlabs").synthesize("[whispers] Breathe in.", "expressive")
    [seen] = speech_server.requests
    assert seen.body["model_id"] == "eleven_v3"
    assert seen.body["text"] == "[whispers] Breathe in."
    assert seen.body["voice_settings"]["stability"] in (0.0, 0.5, 1.0)


def test_elevenlabs_refusal_fails_the_job_at_once_without_the_key(elevenlabs_app, speech_server, caplog):
    app = elevenlabs_app(**{"plugins.elevenlabs.api_key": "wrong-key"})
    answer = app.test_client().post("/api/oracle/chat", json={"userId": "u", "text": "Hello", "voice": True}).get_json()
    job_id = answer["data"]["voice"]["jobId"]
    with caplog.at_level(logging.DEBUG):
        job = drain_until(worker_for(app), job_id)
    assert (job["status"], job["attempts"]) == ("failed", 1)
    assert "401" in job["error"] and "wrong-key" not in job["error"]
    assert "wrong-key" not in caplog.text
    assert len(speech_server.requests) == 1


def test_elevenlabs_without_a_key_leaves_voice_off_and_the_chat_working(make_app, caplog):
    with caplog.at_level(logging.ERROR, logger="spiralogic.voice"):
        app = make_app(**{"voice.backend": "elevenlabs"})
    assert "ELEVENLABS_API_KEY" in caplog.text
    data = app.test_client().post("/api/oracle/chat", json={"userId": "u", "text": "Hello", "voice": True}).get_json()["data"]
    assert data["voice"] == {"status": "unavailable"} and data["message"]


def test_an_unknown_backend_stops_the_app(make_app):
    with pytest.raises(ConfigError, match="voice.backend: no voice_backends component 'elevenlab'"):
        make_app(**{"voice.backend": "elevenlab"})


# -- OpenAI ------------------------------------------------------------------------


def test_openai_tts_through_the_official_client(openai_app, speech_server):
    audio, content_type = backend(openai_app(), "openai_tts").synthesize(TEXT, "calm")
    assert (audio, content_type) == (fake_mp3(TEXT), "audio/mpeg")
    [seen] = speech_server.requests
    assert seen.path == "/v1/audio/speech"
    assert seen.headers["authorization"] == f"Bearer {API_KEY}"
    assert seen.body["model"] == "gpt-4o-mini-tts" and seen.body["voice"] == "alloy"
    assert seen.body["input"] == TEXT and seen.body["response_format"] == "mp3"
    assert "calmly" in seen.body["instructions"] and seen.body["speed"] == 0.9


def test_openai_tts_1_gets_no_instructions_and_wav_is_real_wav(openai_app, speech_server):
    speech = backend(openai_app(**{"plugins.openai_tts.model": "tts-1", "plugins.openai_tts.response_format": "wav"}), "openai_tts")
    audio, content_type = speech.synthesize("[laughs] Hello.", "expressive")
    assert content_type == "audio/wav"
    with wave.open(io.BytesIO(audio)) as wav:
        assert wav.getnframes() > 0
    [seen] = speech_server.requests
    assert "instructions" not in seen.body
    assert seen.body["input"] == "Hello."  # tags are read aloud by this API, so they are dropped


def test_openai_refused_key_is_final_and_not_quoted(openai_app):
    speech = backend(openai_app(**{"plugins.openai_tts.api_key": "sk-wrong"}), "openai_tts")
    with pytest.raises(SynthesisRejected) as refused:
        speech.synthesize(TEXT, "natural")
    assert "401" in str(refused.value) and "sk-wrong" not in str(refused.value)


def test_openai_server_errors_are_left_to_the_worker_to_retry(openai_app, speech_server):
    speech_server.script(503)
    with pytest.raises(openai.InternalServerError):
        backend(openai_app(), "openai_tts").synthesize(TEXT, "natural")


# -- Memoization -------------------------------------------------------------------


def voice(service, text: str = TEXT) -> dict:
    return service.request("memo-user", str(uuid.uuid4()), text)


def test_an_identical_request_within_the_window_calls_no_backend(elevenlabs_app, speech_server):
    app = elevenlabs_app()
    clock = Clock()
    service = with_clock(app, clock)
    first = voice(service)
    drain_until(worker_for(app), first["jobId"])
    assert len(speech_server.requests) == 1

    clock.advance(minutes=59)
    second = voice(service)
    assert second["status"] == "done"  # answered from the memo, nothing queued
    assert len(speech_server.requests) == 1
    client = app.test_client()
    assert client.get(second["url"] + "?download=1").data == client.get(first["url"] + "?download=1").data == fake_mp3(TEXT)
    assert client.get(second["url"]).get_json()["data"]["memoHit"] is True


def test_after_the_window_the_text_is_synthesized_again(elevenlabs_app, speech_server):
    app = elevenlabs_app(**{"voice.memo_window_s": 1800})
    clock = Clock()
    service = with_clock(app, clock)
    drain_until(worker_for(app), voice(service)["jobId"])
    clock.advance(minutes=31)
    later = voice(service)
    assert later["status"] == "queued"
    drain_until(worker_for(app), later["jobId"])
    assert len(speech_server.requests) == 2


def test_identical_jobs_queued_together_are_synthesized_once(elevenlabs_app, speech_server):
    app = elevenlabs_app()
    service = with_clock(app, Clock())
    jobs = [voice(service)["jobId"] for _ in range(3)]
    worker = worker_for(app)
    done = [drain_until(worker, job_id) for job_id in jobs]
    assert len(speech_server.requests) == 1
    assert [job["memo_hit"] for job in done] == [False, True, True]
    assert sum(job["cost_usd"] for job in done) == pytest.approx(len(TEXT) / 1000 * 0.3)


def test_a_different_text_or_preset_is_not_a_memo_hit(elevenlabs_app, speech_server):
    app = elevenlabs_app()
    service = with_clock(app, Clock())
    worker = worker_for(app)
    drain_until(worker, voice(service)["jobId"])
    drain_until(worker, voice(service, TEXT + " Take your time.")["jobId"])
    drain_until(worker, service.request("memo-user", str(uuid.uuid4()), TEXT, "calm")["jobId"])
    assert len(speech_server.requests) == 3
    assert speech_server.requests[2].body["voice_settings"]["speed"] == 0.9

"""Cost and performance guards: presets limited by config, the length guard, expressive tags
(SFX) switched off while the queue is backed up and on again once it recovers, queue health
and cost in statsd, and today's cost against the budget."""

from __future__ import annotations

import json
import socket
import uuid

import pytest
from fake_voice_apis import API_KEY, FakeSpeechServer
from voice_support import Clock, drain_until, with_clock, worker_for

from spiralogic import hookimpl
from spiralogic.cli import cli
from spiralogic.voice.service import voice_service

CHAT = "/api/oracle/chat"
TAG = "[warmly]"


class ExpressiveGuardrail:
    """Asks for the expressive preset and opens the reply with a tag, as a plugin may."""

    @hookimpl
    def shape_response(self, turn, draft):
        draft.text = f"{TAG} {draft.text}"
        draft.notes["voice_preset"] = "expressive"


def voiced(app, user: str = "g") -> dict:
    return app.test_client().post(CHAT, json={"userId": user, "text": "Help me find clarity", "voice": True}).get_json()["data"]["voice"]


def queued_text(app, voice: dict) -> str:
    return voice_service(app).store.get(uuid.UUID(voice["jobId"]))["text"]


def gauges(sock, *names: str) -> dict[str, float]:
    """The last value sent of each named gauge: read until the collector has been quiet a moment."""
    seen: dict[str, float] = {}
    try:
        while True:
            for line in sock.recv(65536).decode().splitlines():
                name, _, rest = line.partition(":")
                if rest.endswith("|g"):
                    seen[name] = float(rest[:-2])
            sock.settimeout(0.3)
    except socket.timeout:
        return {name: seen.get(name) for name in names}


def test_the_expressive_preset_keeps_its_tags_while_the_queue_is_healthy(make_app):
    app = make_app(plugins=[ExpressiveGuardrail()])
    voice = voiced(app)
    assert (voice["preset"], voice["tags"]) == ("expressive", True)
    assert queued_text(app, voice).startswith(TAG)


def test_allowed_presets_limit_every_turn_to_natural(make_app):
    app = make_app(plugins=[ExpressiveGuardrail()], **{"voice.allowed_presets": ["natural"]})
    voice = voiced(app)
    assert (voice["preset"], voice["tags"]) == ("natural", False)
    assert TAG not in queued_text(app, voice)


def test_tags_are_dropped_while_the_queue_age_p95_is_over_60_s_and_return_after(make_app, collector):
    statsd = {"statsd.host": "127.0.0.1", "statsd.port": collector.getsockname()[1], "statsd.prefix": "sl"}
    app = make_app(plugins=[ExpressiveGuardrail()], **statsd)
    clock = Clock()
    service = with_clock(app, clock)
    for _ in range(5):  # a backlog: nobody runs these for a while
        service.request("backlog", str(uuid.uuid4()), "Waiting in line.")
    clock.advance(seconds=90)

    backed_up = voiced(app)
    assert (backed_up["preset"], backed_up["tags"]) == ("expressive", False)
    assert TAG not in queued_text(app, backed_up)
    worker = worker_for(app, clock)
    worker.maintain()
    assert gauges(collector, "sl.voice.queue.age_p95_ms", "sl.voice.tags.enabled", "sl.voice.queue.depth") == {
        "sl.voice.queue.age_p95_ms": 90000,
        "sl.voice.tags.enabled": 0,
        "sl.voice.queue.depth": 6,
    }

    drain_until(worker, backed_up["jobId"])
    still = voiced(app)
    assert still["tags"] is False  # the jobs that just started had waited 90 s
    drain_until(worker, still["jobId"])
    clock.advance(seconds=301)  # the slow starts leave the window; nothing is waiting
    recovered = voiced(app)
    assert recovered["tags"] is True and queued_text(app, recovered).startswith(TAG)


def test_a_reply_over_tts_max_text_chars_is_cut_at_a_sentence_end(make_app):
    app = make_app(tts_max_text_chars=60)
    data = app.test_client().post(CHAT, json={"userId": "long", "text": "Help me find clarity", "voice": True}).get_json()["data"]
    voice = data["voice"]
    text = queued_text(app, voice)
    assert voice["truncated"] is True and voice["chars"] == len(text) <= 60
    assert data["message"].startswith(text) and text[-1] in ".!?"


def test_the_quota_counts_only_what_is_spoken(make_app):
    service = voice_service(make_app(tts_max_text_chars=20))
    answer = service.request("cut", str(uuid.uuid4()), "Short one. " + "And a much longer second sentence." * 5)
    assert (answer["chars"], answer["quota"]["used"]) == (10, 10)


def test_daily_cost_per_backend_against_the_budget(make_app, collector, runner, tmp_path, monkeypatch):
    database = f"sqlite:///{tmp_path / 'cost.db'}"
    settings = {"voice.backend": "elevenlabs", "plugins.elevenlabs.api_key": API_KEY, "voice.daily_budget_usd": 0.01}
    statsd = {"statsd.host": "127.0.0.1", "statsd.port": collector.getsockname()[1], "statsd.prefix": "sl"}
    with FakeSpeechServer() as server:
        app = make_app(database, **settings, **statsd, **{"plugins.elevenlabs.base_url": server.url})
        service = voice_service(app)
        text = "a" * 100 + "."
        worker = worker_for(app)
        drain_until(worker, service.request("payer", str(uuid.uuid4()), text)["jobId"])
        today = worker.daily_spend(service.clock().date())
        assert today["backends"] == [{"backend": "elevenlabs", "jobs": 1, "chars": 101, "cost_usd": pytest.approx(0.0303)}]
        assert today["budget_ratio"] == pytest.approx(3.03)  # over 200%: the playbook's "alert finance"
        worker.maintain()
        assert gauges(collector, "sl.voice.cost.daily_usd.elevenlabs", "sl.voice.cost.budget_ratio") == {
            "sl.voice.cost.daily_usd.elevenlabs": pytest.approx(0.0303),
            "sl.voice.cost.budget_ratio": pytest.approx(3.03),
        }

    monkeypatch.setenv("SPIRALOGIC_DATABASE_URL", database)
    monkeypatch.setenv("SPIRALOGIC_DATA_DIR", str(tmp_path / "data"))
    result = runner.invoke(cli, ["voice-worker", "--status", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["today"]["cost_usd"] == pytest.approx(0.0303) and report["depth"] == 0

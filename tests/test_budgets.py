"""Latency budgets: no provider holds a turn past its hard budget; slow first chunks run lite."""

from __future__ import annotations

import json
import re
import time

import gevent
import pytest
import sqlalchemy as sa

from spiralogic import hookimpl
from spiralogic.budget import Budget
from spiralogic.state import app_state
from spiralogic.turn import Archetype

CANARY = {"x-experiment-spiralogic": "on"}
BODY = {"userId": "budget-user", "text": "I need energy to take action", "element": "fire"}
# Budgets are asserted with a wide margin: a loaded 2-core CI box must not make these flaky.
HARD_S = 0.7
SLACK_S = 0.25


def simulated(**config):
    base = {"latency_p50_ms": 20, "latency_p95_ms": 40, "chunks": 4, "seed": 7}
    return {"generation.provider": "simulated", **{f"plugins.simulated.{k}": v for k, v in {**base, **config}.items()}}


def stored_row(app, turn_id):
    state = app_state(app)
    state.telemetry.flush()
    with state.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT orchestrator_mode, metadata, resonance FROM consciousness_turn_meta WHERE id = :id"),
            {"id": turn_id.replace("-", "")},
        ).one()
    return row.orchestrator_mode, json.loads(row.metadata), json.loads(row.resonance)


def timed_chat(client, headers=CANARY, **extra):
    started = time.monotonic()
    response = client.post("/api/oracle/chat", json=BODY, headers=headers, **extra)
    return response, time.monotonic() - started


@pytest.mark.parametrize("orchestrator", ["on", "off"])
def test_a_hanging_provider_answers_fallback_within_the_hard_budget(make_app, orchestrator):
    app = make_app(**simulated(hang_rate=1.0, hang_ms=5000))
    response, wall = timed_chat(app.test_client(), headers={"x-experiment-spiralogic": orchestrator})
    assert response.status_code == 200
    assert response.headers["x-orchestrator-mode"] == "fallback"
    assert wall < HARD_S + SLACK_S
    body = response.get_json()
    assert body["data"]["message"]
    mode, metadata, _ = stored_row(app, body["data"]["turnId"])
    assert mode == "fallback"
    assert "hard_budget" in metadata["degradations"]


def test_a_slow_first_chunk_runs_lite(make_app):
    app = make_app(**simulated(first_chunk_ms=550, latency_p50_ms=600, latency_p95_ms=620))
    response, _ = timed_chat(app.test_client())
    body = response.get_json()
    assert response.headers["x-orchestrator-mode"] == "lite"
    assert "simulated reply" in body["data"]["message"]
    mode, metadata, _ = stored_row(app, body["data"]["turnId"])
    assert mode == "lite"
    assert metadata["degradations"] == ["soft_budget"]
    assert metadata["firstTokenMs"] >= 450


def test_a_quick_first_chunk_runs_full(make_app):
    app = make_app(**simulated(first_chunk_ms=100, latency_p50_ms=150, latency_p95_ms=200))
    modes = [timed_chat(app.test_client())[0].headers["x-orchestrator-mode"] for _ in range(5)]
    assert modes == ["full"] * 5


@pytest.mark.parametrize("fault", ["error_rate", "cut_rate"])
def test_provider_errors_and_cut_streams_end_in_fallback_with_a_recorded_error(make_app, fault):
    app = make_app(**simulated(**{fault: 1.0}))
    response, wall = timed_chat(app.test_client())
    body = response.get_json()
    assert response.status_code == 200
    assert body["data"]["mode"] == "fallback"
    assert "simulated reply" not in body["data"]["message"]  # never a silently truncated success
    assert wall < HARD_S + SLACK_S
    _, _, resonance = stored_row(app, body["data"]["turnId"])
    assert resonance["error"] and resonance["error"][0].startswith("orchestrator:Simulated")


class SlowArchetypes:
    """An archetype provider slower than the soft budget; records whether it was left running."""

    def __init__(self):
        self.finished = False

    @hookimpl
    def register_archetype_providers(self, register):
        register("slow", lambda context: self)

    def archetypes(self, turn):
        gevent.sleep(1.0)
        self.finished = True
        return [Archetype("sage", 1.0)]


def test_slow_fusion_is_cancelled_and_the_turn_continues_lite(make_app):
    slow = SlowArchetypes()
    app = make_app(plugins=[slow])
    response, wall = timed_chat(app.test_client())
    body = response.get_json()
    assert response.status_code == 200
    assert body["data"]["mode"] == "lite"
    assert body["data"]["archetypes"] == []
    assert body["data"]["message"]
    gevent.sleep(1.2)  # long enough for the provider to finish, had it not been killed
    assert slow.finished is False
    _, metadata, _ = stored_row(app, body["data"]["turnId"])
    assert metadata["degradations"] == ["soft_budget", "heavy_cancelled"]


def test_fallback_service_mode_answers_without_calling_the_provider(make_app):
    app = make_app(**simulated(hang_rate=1.0), **{"modes.fallback_probe_ratio": 0})
    state = app_state(app)
    state.modes.transition("fallback", "test", actor="test", now=state.modes.clock())
    response, wall = timed_chat(app.test_client())
    assert response.headers["x-orchestrator-mode"] == "fallback"
    assert wall < 0.3  # nothing waited on the hanging provider


def read_events(response):
    """Parse a Server-Sent Events body, noting when each event arrived."""
    events, buffer = [], ""
    for chunk in response.response:
        buffer += chunk.decode() if isinstance(chunk, bytes) else chunk
        while "\n\n" in buffer:
            block, buffer = buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in block.splitlines())
            events.append((time.monotonic(), fields["event"], json.loads(fields["data"])))
    return events


def test_streaming_sends_segments_before_the_full_reply(make_app):
    app = make_app(**simulated(first_chunk_ms=50, latency_p50_ms=400, latency_p95_ms=420, chunks=5))
    started = time.monotonic()
    response = app.test_client().post("/api/oracle/chat", json=BODY, headers={**CANARY, "Accept": "text/event-stream"})
    assert response.mimetype == "text/event-stream"
    events = read_events(response)
    kinds = [kind for _, kind, _ in events]
    assert kinds == ["segment"] * 5 + ["done"]
    first_at, done_at = events[0][0] - started, events[-1][0] - started
    assert first_at < done_at - 0.15  # the first segment came well before the whole reply
    done = events[-1][2]
    assert done["data"]["message"] == "".join(payload["text"] for _, kind, payload in events if kind == "segment")
    _, metadata, _ = stored_row(app, done["data"]["turnId"])
    assert metadata["firstTokenMs"] == done["meta"]["firstTokenMs"]
    assert abs(metadata["firstTokenMs"] - first_at * 1000) < 100


def test_chunks_that_arrive_together_go_out_as_one_segment(make_app):
    """The template voice produces its sentences at once: one event, one write, not one per sentence."""
    app = make_app()
    response = app.test_client().post("/api/oracle/chat", json=BODY, headers={**CANARY, "Accept": "text/event-stream"})
    events = read_events(response)
    assert [kind for _, kind, _ in events] == ["segment", "done"]
    text, done = events[0][2]["text"], events[1][2]
    assert done["data"]["mode"] == "full"
    assert len(re.findall(r"[.!?] ", text)) >= 1  # several sentences, joined
    assert done["data"]["message"] == text


def test_a_json_answer_records_when_the_text_first_came_not_when_it_ended(make_app):
    app = make_app(**simulated(first_chunk_ms=50, latency_p50_ms=400, latency_p95_ms=420, chunks=5))
    body = timed_chat(app.test_client())[0].get_json()
    assert body["data"]["mode"] == "full"
    # The whole reply was awaited. Not 380: with a random turn id as the seed, 4% of draws
    # from this distribution (median 400 ms, P95 420 ms) land under 380 ms.
    assert body["meta"]["latencyMs"] >= 300
    assert 40 <= body["meta"]["firstTokenMs"] < body["meta"]["latencyMs"] - 150
    _, metadata, _ = stored_row(app, body["data"]["turnId"])
    assert metadata["firstTokenMs"] == body["meta"]["firstTokenMs"]


def test_a_stream_cut_mid_way_ends_as_fallback(make_app):
    app = make_app(**simulated(cut_rate=1.0, chunks=6))
    response = app.test_client().post("/api/oracle/chat", json=BODY, headers={**CANARY, "Accept": "text/event-stream"})
    events = read_events(response)
    assert events[-1][1] == "done"
    assert events[-1][2]["data"]["mode"] == "fallback"
    assert any(kind == "segment" for _, kind, _ in events[:-1])


def test_a_lagging_worker_stops_waiting_earlier_by_its_lag(make_app):
    """Timers fire late on a saturated worker: the turn keeps its measured lag in reserve."""
    # Admission thresholds above the lag, so the turn is admitted rather than shed.
    app = make_app(**simulated(hang_rate=1.0, hang_ms=5000), **{"admission.degrade_lag_ms": 1000, "admission.reject_lag_ms": 2000})
    app_state(app).admission.lag_ms = 400.0
    response, wall = timed_chat(app.test_client())
    assert response.headers["x-orchestrator-mode"] == "fallback"
    # Without the lag kept back the wait would be 670 ms (700 less the 30 ms fallback reserve).
    assert response.get_json()["meta"]["latencyMs"] < 500
    assert wall < HARD_S


def test_a_turn_shed_under_overload_answers_fallback_without_reading_the_history(make_app):
    app = make_app(**{"admission.degrade_lag_ms": 100, "admission.reject_lag_ms": 2000})
    client = app.test_client()
    user = {"userId": "shed-user", "element": "water"}
    client.post("/api/oracle/chat", json={**user, "text": "I pray for guidance every morning"}, headers=CANARY)
    app_state(app).telemetry.flush()

    def turn(text):
        body = client.post("/api/oracle/chat", json={**user, "text": text}, headers=CANARY).get_json()
        return stored_row(app, body["data"]["turnId"])

    mode, metadata, _ = turn("How should I begin today")
    assert mode == "full" and metadata["worldview"] == "spiritual"  # remembered from the first turn
    assert metadata["guardrails"]["worldview_signal"] == "history"
    app_state(app).admission.lag_ms = 400.0  # past degrade_lag_ms: the worker is saturated
    mode, metadata, _ = turn("How should I begin today")
    assert mode == "fallback" and metadata["degradations"] == ["overload"]
    # No history read: the cautious default, as when the history cannot be read.
    assert metadata["worldview"] == "pragmatic" and metadata["guardrails"]["worldview_signal"] == "default"


def test_the_budget_counts_the_loop_lag_before_the_start_and_before_the_deadline():
    now, lag = [100.0], [0.05]
    budget = Budget.start(450, 700, 30, clock=lambda: now[0], lag=lambda: lag[0])
    # The request already waited about the lag; and wake-ups come that late, so ask that early.
    assert budget.hard_at == pytest.approx(100.65)
    assert budget.work_left() == pytest.approx(0.65 - 0.03 - 0.05)
    lag[0] = 0.2  # the worker starts to lag mid-turn: the orchestrator's share shrinks at once
    assert budget.work_left() == pytest.approx(0.65 - 0.03 - 0.2)
    now[0] = 100.5
    assert budget.work_left() == 0.0 and budget.elapsed_ms() == 500

"""One chat turn from validated request to response body and telemetry row."""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from spiralogic import guardrails
from spiralogic.components import ComponentUnavailable
from spiralogic.routing import Route, choose_route
from spiralogic.schemas import ChatRequest
from spiralogic.services import Services
from spiralogic.turn import Draft, Turn, TurnRecord

log = logging.getLogger(__name__)


@dataclass
class TurnResult:
    body: dict[str, Any]
    turn: Turn


class ChatPipeline:
    """Routes, assesses, orchestrates, shapes and records one turn."""

    def __init__(self, state):
        self.state = state
        self.settings = state.settings
        self.counters: Counter = state.counters

    def run(self, request: ChatRequest, *, header: str | None, request_id: str) -> TurnResult:
        started = time.monotonic()
        route = choose_route(
            header,
            request.userId,
            orchestrator=self.settings.orchestrator,
            percent=self.settings.rollout.percent,
            group=self.settings.rollout.cohort_group,
        )
        orchestrator, route = self._orchestrator_for(route)
        turn = Turn(
            turn_id=str(uuid.uuid4()),
            request_id=request_id,
            user_id=request.userId,
            session_id=request.sessionId,
            text=request.text,
            element=request.element,
            voice=request.voice,
            orchestrator=route.orchestrator,
            route_reason=route.reason,
        )
        turn.assessment = guardrails.assess(self.state.pm, turn)
        services = self._services()
        draft = self._respond(orchestrator, turn, services)
        guardrails.shape(self.state.pm, turn, draft)
        quality = self.state.pm.hook.score_response(turn=turn, draft=draft)
        latency_ms = _ms(time.monotonic() - started)
        first_token_ms = _ms(services.first_chunk_at - started) if services.first_chunk_at else None
        self.state.telemetry.submit(turn, self._record(turn, draft, latency_ms, first_token_ms, quality))
        return TurnResult(self._body(turn, draft, latency_ms, first_token_ms), turn)

    def _orchestrator_for(self, route: Route):
        registry = self.state.registries["orchestrators"]
        try:
            return registry.get(route.orchestrator), route
        except ComponentUnavailable:
            if route.orchestrator == "baseline":
                raise
            self.counters["orchestrator_unavailable"] += 1
            log.error("orchestrator %s unavailable; answering with baseline", route.orchestrator)
            return registry.get("baseline"), Route("baseline", f"{route.reason}:unavailable")

    def _services(self) -> Services:
        registries = self.state.registries
        providers = []
        for provider_id in registries["archetype_providers"].ids():
            try:
                providers.append(registries["archetype_providers"].get(provider_id))
            except ComponentUnavailable:
                self.counters["archetype_provider_unavailable"] += 1
        return Services(
            generator=registries["llm_providers"].get(self.settings.generation.provider),
            archetype_providers=providers,
            cache=self.state.cache,
        )

    def _respond(self, orchestrator, turn: Turn, services: Services) -> Draft:
        """The orchestrator's draft; if it fails, the concise fallback reply."""
        try:
            return orchestrator.respond(turn, services)
        except Exception as exc:  # noqa: BLE001 - a failing orchestrator degrades, never 500s
            log.exception("orchestrator %s failed", turn.orchestrator)
            self.counters["orchestrator_error"] += 1
            turn.mode = "fallback"
            fallback = self.state.registries["llm_providers"].get(self.settings.generation.fallback_provider)
            text = "".join(fallback.generate(services.prompt_for(turn)))
            return Draft(text=text, errors=[f"orchestrator:{type(exc).__name__}"])

    def _record(self, turn: Turn, draft: Draft, latency_ms: int, first_token_ms: int | None, quality) -> TurnRecord:
        metadata: dict[str, Any] = {
            "latencyMs": latency_ms,
            "firstTokenMs": first_token_ms,
            "tokens": draft.tokens or {"completion": len(draft.text.split()), "estimated": True},
            "requestId": turn.request_id,
            "route": turn.route_reason,
            "textChars": len(turn.text),
            "crisis": turn.assessment.crisis,
        }
        if quality is not None:
            metadata["qualityScore"] = quality
        if turn.assessment.worldview:
            metadata["worldview"] = turn.assessment.worldview
        if turn.assessment.tags:
            metadata["guardrails"] = turn.assessment.tags
        if self.settings.store_raw_text:
            metadata["text"] = turn.text
        resonance: dict[str, Any] = {}
        if draft.cache_hit:
            resonance["cache_hit"] = True
        if draft.errors:
            resonance["error"] = draft.errors
        if draft.archetypes:
            resonance["top"] = draft.archetypes[0].name
            resonance["archetypes"] = {a.name: a.weight for a in draft.archetypes}
        return TurnRecord(
            id=turn.turn_id,
            created_at=datetime.now(timezone.utc),
            user_id=turn.user_id,
            session_id=turn.session_id,
            orchestrator=turn.orchestrator,
            orchestrator_mode=turn.mode,
            element=turn.element,
            metadata=metadata,
            resonance=resonance,
        )

    def _body(self, turn: Turn, draft: Draft, latency_ms: int, first_token_ms: int | None) -> dict[str, Any]:
        return {
            "data": {
                "turnId": turn.turn_id,
                "message": draft.text,
                "orchestrator": turn.orchestrator,
                "mode": turn.mode,
                "element": turn.element,
                "archetypes": [{"name": a.name, "weight": a.weight} for a in draft.archetypes],
                "challenge": draft.challenge,
                "safety": {"crisis": turn.assessment.crisis, "grounding": "offer grounding" in turn.assessment.instructions},
                "voice": None,
            },
            "meta": {
                "latencyMs": latency_ms,
                "firstTokenMs": first_token_ms,
                "cacheHit": draft.cache_hit,
                "requestId": turn.request_id,
            },
        }


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))

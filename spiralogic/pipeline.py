"""One chat turn, from validated request to response and telemetry row.

The orchestrator runs in a greenlet of its own while the request's greenlet
watches the clock: it forwards text as it arrives, drops the turn to lite when
the first chunk misses the soft budget, and stops waiting when the hard budget
is about to run out, answering the concise fallback instead. So no provider,
however it misbehaves, holds a request past its budget.
"""

from __future__ import annotations

import contextvars
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable, Iterator

import gevent
from gevent.queue import Empty, Queue

from spiralogic import guardrails
from spiralogic.budget import Budget, BudgetExceeded
from spiralogic.components import ComponentUnavailable
from spiralogic.history import UserHistory
from spiralogic.routing import Rollout, Route, choose_route
from spiralogic.schemas import ChatRequest
from spiralogic.services import Services
from spiralogic.turn import Draft, Turn, TurnRecord
from spiralogic.voice.service import voice_service

log = logging.getLogger(__name__)
_DONE = object()
#: longest wait for a chunk before the deadline is computed again with the worker's current lag
LAG_RECHECK_S = 0.1


@dataclass
class Event:
    """What a turn emits: ``segment`` events while text arrives, then one ``done``."""

    kind: str
    payload: dict[str, Any]


class ChatPipeline:
    """Routes, assesses, orchestrates under budget, shapes and records one turn."""

    def __init__(self, state):
        self.state = state
        self.settings = state.turn_settings
        self.voice = voice_service()

    def start(
        self,
        request: ChatRequest,
        *,
        header: str | None,
        request_id: str,
        mode: str = "full",
        header_ignored: bool = False,
        stream: bool = True,
        overloaded: bool = False,
    ) -> tuple[Turn, Iterator[Event]]:
        """Route and assess the turn now; return it with the iterator of its events.

        ``mode`` is where the turn starts (the service's mode). With ``stream``
        the text comes as ``segment`` events while it arrives, and the ``done``
        event's ``firstTokenMs`` is when the first segment was handed on: a
        streaming caller writes each event as it gets it, so that is the first
        byte the client sees. Without it only ``done`` comes, and
        ``firstTokenMs`` is when the orchestrator first produced text.
        ``header_ignored``: a canary header was sent but not admitted; the
        route reason records it. ``overloaded``: admission shed the turn; it
        skips the history read, the costliest step that only personalises
        (guardrails treat an unknown history cautiously), and records
        ``overload`` among its degradations.
        """
        budget = Budget.start(
            self.settings.soft_budget_ms,
            self.settings.hard_budget_ms,
            self.settings.fallback_reserve_ms,
            lag=lambda: self.state.admission.lag_ms / 1000,
        )
        turn, orchestrator = self._begin(request, header, request_id, mode, header_ignored, overloaded)
        return turn, self._events(turn, orchestrator, budget, stream)

    def _events(self, turn: Turn, orchestrator, budget: Budget, stream: bool) -> Iterator[Event]:
        services = self._services(turn, budget)
        first_token_at = None
        if turn.mode == "fallback":
            draft = None
        else:
            # In the turn's context: its request id goes on the orchestrator's log lines too.
            worker = gevent.spawn(contextvars.copy_context().run, self._respond, orchestrator, turn, services)
            for segment in self._segments(worker, turn, services, budget, stream):
                first_token_at = first_token_at or budget.clock()
                yield Event("segment", {"text": segment})
            draft = self._outcome(worker, turn)
            if draft is not None and not stream:
                first_token_at = services.first_chunk_at
        if draft is None:
            draft = self._fallback(turn, services)
            first_token_at = first_token_at or budget.clock()
        guardrails.shape(self.state.pm, turn, draft, self.state.plugin_config)
        # Speech is only queued here, in every mode; the voice worker synthesizes it.
        voice = self.voice.request(turn.user_id, turn.turn_id, draft.text, draft.notes.get("voice_preset")) if turn.voice else None
        latency_ms = budget.elapsed_ms()
        first_token_ms = budget.elapsed_ms(first_token_at)
        turn.reply = draft
        record = self._record(turn, draft, services.tokens, latency_ms, first_token_ms)
        self.state.telemetry.submit(turn, record)
        self.state.history.remember(record)
        yield Event("done", self._body(turn, draft, latency_ms, first_token_ms, voice))

    def _begin(self, request: ChatRequest, header: str | None, request_id: str, mode: str, header_ignored: bool, overloaded: bool):
        route = choose_route(
            header,
            request.userId,
            orchestrator=self.settings.orchestrator,
            rollout=self._rollout(),
            group=self.settings.cohort_group,
            header_ignored=header_ignored,
        )
        log.debug("turn of %s routed to %s: %s", request.userId, route.orchestrator, route.reason)
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
            mode=mode,
            challenge_intensity=self.settings.shadow_challenge_intensity,
            history=UserHistory(known=False) if overloaded else self.state.history.load(request.userId),
            degradations=["overload"] if overloaded else [],
        )
        turn.assessment = guardrails.assess(self.state.pm, turn, self.state.plugin_config)
        return turn, orchestrator

    def _rollout(self) -> Rollout:
        flags = self.state.flags.all()
        percent = flags["percent"] if flags["percent"] is not None else self.settings.rollout_percent
        return Rollout(flags["phase"], percent, bool(flags["kill_switch"]), self.state.flags.readable)

    def _orchestrator_for(self, route: Route):
        registry = self.state.registries["orchestrators"]
        try:
            return registry.get(route.orchestrator), route
        except ComponentUnavailable:
            if route.orchestrator == "baseline":
                raise
            self.state.counters["orchestrator_unavailable"] += 1
            log.error("orchestrator %s unavailable; answering with baseline", route.orchestrator)
            return registry.get("baseline"), Route("baseline", f"{route.reason}:unavailable")

    def _services(self, turn: Turn, budget: Budget) -> Services:
        registries = self.state.registries
        providers = []
        for provider_id in registries["archetype_providers"].ids():
            try:
                providers.append(registries["archetype_providers"].get(provider_id))
            except ComponentUnavailable:
                self.state.counters["archetype_provider_unavailable"] += 1
        return Services(
            turn=turn,
            budget=budget,
            generator=registries["llm_providers"].get(self.settings.generation_provider),
            archetype_providers=providers,
            cache=self.state.cache,
            metrics=self.state.metrics,
            memo_ttl=self.settings.archetype_memo_ttl,
        )

    @staticmethod
    def _respond(orchestrator, turn: Turn, services: Services) -> Draft | Exception:
        """The draft, or the exception the orchestrator raised.

        Returned, not raised: gevent prints a raising greenlet's traceback and
        arguments (the turn, with the user's text) to stderr.
        """
        try:
            return orchestrator.respond(turn, services)
        except Exception as exc:  # noqa: BLE001 - judged by _outcome, which records it
            return exc
        finally:
            services.chunks.put(_DONE)

    def _segments(self, worker: gevent.Greenlet, turn: Turn, services: Services, budget: Budget, stream: bool) -> Iterator[str]:
        """Hand on text as it comes, until the orchestrator is done or the budget is not.

        Chunks already queued behind the one it woke for go on with it, as one
        segment: a provider that delivers faster than the client reads costs
        one event and one write, not one per chunk. Not streaming, it hands on
        nothing and wakes only when the orchestrator ends or a budget is due,
        not once per chunk.
        """
        wait = services.chunks.get if stream else partial(_joined, worker)
        while True:
            waiting_for_first = turn.mode == "full" and services.first_chunk_at is None and budget.soft_left() > 0
            timeout = min(budget.soft_left(), budget.work_left()) if waiting_for_first else budget.work_left()
            try:
                # In slices: the deadline moves earlier when the worker starts to lag mid-wait.
                item = _within(min(timeout, LAG_RECHECK_S), wait)
            except Empty:
                if budget.work_left() <= 0:
                    self._cancel(worker, turn, "hard_budget")
                    return
                if waiting_for_first and budget.soft_left() <= 0:
                    services.degrade_to_lite("soft_budget")
                continue
            if item is _DONE:
                return
            # The clock is checked after every wake-up: on a saturated CPU timers fire late.
            if budget.work_left() <= 0:
                self._cancel(worker, turn, "hard_budget")
                return
            text, ended = _with_queued(item, services.chunks)
            yield text
            if ended:
                return

    @staticmethod
    def _cancel(worker: gevent.Greenlet, turn: Turn, reason: str) -> None:
        worker.kill(block=False)
        turn.degradations.append(reason)

    def _outcome(self, worker: gevent.Greenlet, turn: Turn) -> Draft | None:
        """The orchestrator's draft, or None when the turn must fall back."""
        if not worker.ready():
            return None
        if isinstance(worker.value, Draft):
            return worker.value
        exc = worker.value if isinstance(worker.value, Exception) else worker.exception
        if isinstance(exc, BudgetExceeded):
            turn.degradations.append("hard_budget")
        elif "hard_budget" not in turn.degradations:
            log.warning("orchestrator %s failed: %r", turn.orchestrator, exc)
            turn.errors.append(f"orchestrator:{type(exc).__name__}")
            self.state.counters["orchestrator_error"] += 1
        return None

    def _fallback(self, turn: Turn, services: Services) -> Draft:
        """The concise reply, voiced locally, when the orchestrator could not answer in time."""
        turn.mode = "fallback"
        provider = self.state.registries["llm_providers"].get(self.settings.fallback_provider)
        return Draft(text="".join(provider.generate(services.prompt_for(turn))))

    def _record(self, turn: Turn, draft: Draft, tokens: dict[str, int], latency_ms: int, first_token_ms: int) -> TurnRecord:
        metadata: dict[str, Any] = {
            "latencyMs": latency_ms,
            "firstTokenMs": first_token_ms,
            "tokens": tokens or {"completion": len(draft.text.split()), "estimated": True},
            "requestId": turn.request_id,
            "route": turn.route_reason,
            "textChars": len(turn.text),
            "crisis": turn.assessment.crisis,
        }
        optional = {
            "worldview": turn.assessment.worldview,
            "challenge": draft.challenge["intensity"] if draft.challenge else None,
            "guardrails": turn.assessment.tags,
            "degradations": turn.degradations,
            "text": turn.text if self.settings.store_raw_text else None,
        }
        metadata.update({key: value for key, value in optional.items() if value not in (None, [], {})})
        return TurnRecord(
            id=turn.turn_id,
            created_at=datetime.now(timezone.utc),
            user_id=turn.user_id,
            session_id=turn.session_id,
            orchestrator=turn.orchestrator,
            orchestrator_mode=turn.mode,
            element=turn.element,
            metadata=metadata,
            resonance=_resonance(turn, draft),
        )

    def _body(self, turn: Turn, draft: Draft, latency_ms: int, first_token_ms: int, voice: dict[str, Any] | None) -> dict[str, Any]:
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
                "voice": voice,
            },
            "meta": {
                "latencyMs": latency_ms,
                "firstTokenMs": first_token_ms,
                "cacheHit": draft.cache_hit,
                "requestId": turn.request_id,
            },
        }


def _within(timeout: float, wait: Callable[[], Any]):
    """What ``wait()`` returns, or Empty after ``timeout``.

    The timer has libev's highest priority: on a saturated loop it runs before the
    I/O callbacks of the same iteration (gevent's own timeouts run after them),
    which is most of how late a deadline would otherwise fire.
    """
    with gevent.Timeout(timeout, Empty, priority=2):
        return wait()


def _with_queued(chunk: str, chunks: Queue) -> tuple[str, bool]:
    """``chunk`` joined with the chunks queued behind it, and whether the orchestrator's end was among them."""
    pieces = [chunk]
    while True:
        try:
            item = chunks.get_nowait()
        except Empty:
            return "".join(pieces), False
        if item is _DONE:
            return "".join(pieces), True
        pieces.append(item)


def _joined(worker: gevent.Greenlet):
    """``_DONE``, once the orchestrator's greenlet has ended."""
    worker.join()
    return _DONE


def _resonance(turn: Turn, draft: Draft) -> dict[str, Any]:
    """Only the keys that apply: the playbook's queries test for their presence."""
    resonance: dict[str, Any] = {}
    if draft.cache_hit:
        resonance["cache_hit"] = True
    if turn.errors:
        resonance["error"] = turn.errors
    if draft.archetypes:
        resonance["top"] = draft.archetypes[0].name
        resonance["archetypes"] = {a.name: a.weight for a in draft.archetypes}
    return resonance

"""What an orchestrator may use while it answers a turn, within the turn's budget."""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import gevent
from gevent.queue import Queue

from spiralogic import memo
from spiralogic.budget import Budget
from spiralogic.turn import Archetype, Prompt, Turn

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Services:
    """Handed to ``Orchestrator.respond``, one per turn.

    ``generate`` forwards each chunk to ``chunks`` as it arrives, so the core
    can stream it and can stop waiting when the budget runs out, whatever the
    provider does. ``first_chunk_at`` (monotonic seconds) is when generation
    first produced text. ``memo_ttl`` is how long ``memoize`` keeps a result
    (seconds; 0 turns memoization off).
    """

    turn: Turn
    budget: Budget
    generator: Any
    archetype_providers: list[Any] = field(default_factory=list)
    cache: Any = None
    metrics: Any = None
    memo_ttl: int = 0
    first_chunk_at: float | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    chunks: Queue = field(default_factory=Queue)
    _heavy: gevent.Greenlet | None = None

    def generate(self, prompt: Prompt) -> str:
        """Run the configured generator to the end and return the whole reply.

        Token counts the generator reports are added to ``tokens``.
        """
        parts: list[str] = []
        for chunk in self.generator.generate(prompt):
            self.budget.check()
            if self.first_chunk_at is None:
                self.first_chunk_at = self.budget.clock()
            parts.append(chunk)
            self.chunks.put(chunk)
        for kind, count in prompt.usage.items():
            self.tokens[kind] = self.tokens.get(kind, 0) + count
        return "".join(parts)

    def memoize(self, namespace: str, key: str, compute: Callable[[], T]) -> tuple[T, bool]:
        """``compute()``'s value, from the app cache when it holds one: ``(value, hit)``.

        ``key`` is the caller's normalised form of the input: requests that
        normalise alike share one entry. Each lookup counts
        ``<namespace>.cache.hit`` or ``.miss``. The cache only saves work, so a
        backend fault (Redis down) counts ``<namespace>.cache.error`` and the
        value is computed without it.
        """
        if self.memo_ttl <= 0:
            return self._computed(namespace, compute, store_as=None)
        cache_key = memo.cache_key(namespace, key)
        try:
            cached = self.cache.get(cache_key)
        except Exception as exc:
            self._cache_error(namespace, "read", exc)
            return self._computed(namespace, compute, store_as=None)  # a write would fail alike
        if cached is not None:
            self.metrics.incr(f"{namespace}.cache.hit")
            return cached[0], True
        return self._computed(namespace, compute, store_as=cache_key)

    def _computed(self, namespace: str, compute: Callable[[], T], store_as: str | None) -> tuple[T, bool]:
        self.metrics.incr(f"{namespace}.cache.miss")
        value = compute()
        if store_as is not None:
            try:
                # Wrapped in a tuple, so a memoized None is told apart from a miss.
                self.cache.set(store_as, (value,), timeout=self.memo_ttl)
            except Exception as exc:
                self._cache_error(namespace, "write", exc)
        return value, False

    def _cache_error(self, namespace: str, action: str, exc: Exception) -> None:
        log.warning("%s cache %s failed: %s", namespace, action, type(exc).__name__)
        self.metrics.incr(f"{namespace}.cache.error")

    def run_heavy(self, step: Callable[[], T]) -> T | None:
        """Run a step that lite mode drops, for as long as the soft budget lasts.

        Returns None when the turn is not (or no longer) in full mode, when the
        soft budget ran out first (the step's greenlet is killed), or when the
        step failed.
        """
        if self.turn.mode != "full":
            return None
        heavy = self._heavy = gevent.spawn(contextvars.copy_context().run, step)
        heavy.join(timeout=self.budget.soft_left())
        if not heavy.ready() or self.turn.mode != "full":  # timed out here, or cancelled by the core's soft timer
            self.degrade_to_lite("soft_budget")
            return None
        self._heavy = None
        if not heavy.successful():
            log.warning("heavy step failed: %r", heavy.exception)
            self.turn.errors.append(f"heavy:{type(heavy.exception).__name__}")
            return None
        return heavy.value

    def degrade_to_lite(self, reason: str) -> None:
        """Drop to lite: note why, and cancel the heavy step if it still runs."""
        if self.turn.mode == "full":
            self.turn.mode = "lite"
            self.turn.degradations.append(reason)
        heavy, self._heavy = self._heavy, None
        if heavy is not None and not heavy.dead:
            heavy.kill(block=False)
            self.turn.degradations.append("heavy_cancelled")

    def prompt_for(self, turn: Turn, archetypes: list[Archetype] | None = None) -> Prompt:
        return Prompt(
            text=turn.text,
            element=turn.element,
            mode=turn.mode,
            seed=turn.turn_id,
            archetypes=archetypes or [],
            worldview=turn.assessment.worldview,
            instructions=list(turn.assessment.instructions),
            deadline=self.budget.work_deadline(),
        )

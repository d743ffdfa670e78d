"""What an orchestrator may use while it answers a turn, within the turn's budget."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import gevent
from gevent.queue import Queue

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
    first produced text.
    """

    turn: Turn
    budget: Budget
    generator: Any
    archetype_providers: list[Any] = field(default_factory=list)
    cache: Any = None
    metrics: Any = None
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

    def run_heavy(self, step: Callable[[], T]) -> T | None:
        """Run a step that lite mode drops, for as long as the soft budget lasts.

        Returns None when the turn is not (or no longer) in full mode, when the
        soft budget ran out first (the step's greenlet is killed), or when the
        step failed.
        """
        if self.turn.mode != "full":
            return None
        heavy = self._heavy = gevent.spawn(step)
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
            deadline=self.budget.hard_at - self.budget.reserve,
        )

"""What an orchestrator may use while it answers a turn."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from spiralogic.turn import Archetype, Prompt, Turn


@dataclass
class Services:
    """Handed to ``Orchestrator.respond``, one per turn; the core decides what stands behind it.

    ``first_chunk_at`` (monotonic seconds) is when generation first produced
    text in this turn: the core reports it as first-token time.
    """

    generator: Any
    archetype_providers: list[Any] = field(default_factory=list)
    cache: Any = None
    clock: Callable[[], float] = time.monotonic
    first_chunk_at: float | None = None

    def generate(self, prompt: Prompt) -> str:
        """Run the configured generator to the end and return the whole reply."""
        parts: list[str] = []
        for chunk in self.generator.generate(prompt):
            if self.first_chunk_at is None:
                self.first_chunk_at = self.clock()
            parts.append(chunk)
        return "".join(parts)

    def prompt_for(self, turn: Turn, archetypes: list[Archetype] | None = None) -> Prompt:
        return Prompt(
            text=turn.text,
            element=turn.element,
            mode=turn.mode,
            seed=turn.turn_id,
            archetypes=archetypes or [],
            worldview=turn.assessment.worldview,
            instructions=list(turn.assessment.instructions),
        )

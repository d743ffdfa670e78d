"""The spiralogic orchestrator: archetype fusion, then the oracle voice on top.

Fusion asks every archetype provider and merges their weights. It is the
heavy step: it runs only in full mode and only while the soft budget lasts.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from spiralogic import hookimpl
from spiralogic.turn import Archetype, Draft

log = logging.getLogger(__name__)
TOP_ARCHETYPES = 3


def fuse(answers: list[list[Archetype]]) -> list[Archetype]:
    """Sum each archetype's weight over providers, normalise, keep the strongest."""
    totals: dict[str, float] = defaultdict(float)
    for answer in answers:
        for archetype in answer:
            totals[archetype.name] += archetype.weight
    grand_total = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:TOP_ARCHETYPES]
    return [Archetype(name, round(weight / grand_total, 4), "fusion") for name, weight in ranked]


class SpiralogicOrchestrator:
    def respond(self, turn, services) -> Draft:
        archetypes = services.run_heavy(lambda: self._fusion(turn, services)) or []
        text = services.generate(services.prompt_for(turn, archetypes))
        return Draft(text=text, archetypes=archetypes)

    def _fusion(self, turn, services) -> list[Archetype]:
        return fuse([provider.archetypes(turn) for provider in services.archetype_providers])


@hookimpl
def register_orchestrators(register):
    register("spiralogic", lambda context: SpiralogicOrchestrator())

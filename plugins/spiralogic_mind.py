"""The spiralogic orchestrator: archetype fusion, then the oracle voice on top.

Fusion asks every archetype provider and merges their weights. It is the
heavy step: it runs only in full mode and only while the soft budget lasts.
Its result is memoized in the app cache (``services.memoize``), shared by
every user whose message normalises alike, for ``ARCHETYPE_MEMO_TTL``.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import defaultdict

from spiralogic import hookimpl
from spiralogic.turn import Archetype, Draft

log = logging.getLogger(__name__)
TOP_ARCHETYPES = 3
WORD = re.compile(r"\w+")


def fuse(answers: list[list[Archetype]]) -> list[Archetype]:
    """Sum each archetype's weight over providers, normalise, keep the strongest."""
    totals: dict[str, float] = defaultdict(float)
    for answer in answers:
        for archetype in answer:
            totals[archetype.name] += archetype.weight
    grand_total = sum(totals.values()) or 1.0
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:TOP_ARCHETYPES]
    return [Archetype(name, round(weight / grand_total, 4), "fusion") for name, weight in ranked]


def memo_key(element: str | None, text: str) -> str:
    """The fusion's cache key: the element and the text's words, in order.

    Case, punctuation, spacing and Unicode presentation forms are dropped, so
    "Help me find clarity in this decision" and "help me  find clarity in this
    decision!" share an entry. Every word stays, in its order: a provider may
    read the sentence as a whole (a model, say), and "not" is on most
    stop-word lists, so dropping stop-words (or sorting words) could hand
    "I am not okay" the archetypes of "I am okay".
    """
    words = WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    return f"{element or ''}|{' '.join(words)}"


class SpiralogicOrchestrator:
    def respond(self, turn, services) -> Draft:
        archetypes, hit = services.run_heavy(lambda: self._fusion(turn, services)) or ([], False)
        text = services.generate(services.prompt_for(turn, archetypes))
        return Draft(text=text, archetypes=archetypes, cache_hit=hit)

    def _fusion(self, turn, services) -> tuple[list[Archetype], bool]:
        return services.memoize(
            "archetype",
            memo_key(turn.element, turn.text),
            lambda: fuse([provider.archetypes(turn) for provider in services.archetype_providers]),
        )


@hookimpl
def register_orchestrators(register):
    register("spiralogic", lambda context: SpiralogicOrchestrator())

"""The values a turn is made of, shared by the core and every plugin."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from spiralogic.history import UserHistory

ELEMENTS = ("air", "earth", "water", "fire", "aether")
MODES = ("full", "lite", "fallback")
ORCHESTRATORS = ("baseline", "spiralogic")


@dataclass(frozen=True)
class Archetype:
    """One archetype and how strongly the turn resonates with it (0..1)."""

    name: str
    weight: float
    source: str = ""


@dataclass
class Assessment:
    """What the guardrails concluded about the user's message.

    ``instructions`` are short guidance lines for the generator (for example
    "offer grounding"); ``tags`` carries anything else a guardrail wants to
    record on the turn, and ends up in the telemetry row.
    """

    crisis: bool = False
    allow_challenge: bool = True
    worldview: str | None = None
    instructions: list[str] = field(default_factory=list)
    tags: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failed_safe(cls) -> Assessment:
        """The verdict used when a guardrail itself failed."""
        return cls(allow_challenge=False, instructions=["offer grounding"], tags={"guardrail_error": True})

    def merge(self, other: Assessment) -> Assessment:
        return Assessment(
            crisis=self.crisis or other.crisis,
            allow_challenge=self.allow_challenge and other.allow_challenge,
            worldview=self.worldview or other.worldview,
            instructions=self.instructions + [i for i in other.instructions if i not in self.instructions],
            tags={**self.tags, **other.tags},
        )


@dataclass
class Turn:
    """One user message on its way through the pipeline."""

    turn_id: str
    request_id: str
    user_id: str
    text: str
    element: str | None
    orchestrator: str
    mode: str = "full"
    session_id: str | None = None
    voice: bool = False
    route_reason: str = ""
    #: the most intense shadow-work challenge this service may offer (SHADOW_CHALLENGE_INTENSITY)
    challenge_intensity: str = "med"
    history: UserHistory = field(default_factory=UserHistory)
    assessment: Assessment = field(default_factory=Assessment)
    #: why the turn ran below full mode (soft_budget, hard_budget, ...), in order
    degradations: list[str] = field(default_factory=list)
    #: faults met on the way (provider errors, failed plugins); they make the turn count as an error
    errors: list[str] = field(default_factory=list)
    #: the reply as sent, once the turn is complete (what evaluators and observers read)
    reply: Draft | None = None


@dataclass
class Prompt:
    """What a generator is asked to voice, and by when.

    ``deadline`` is the ``time.monotonic()`` by which the generator must have
    finished: derive connect/read timeouts and retries from it. A generator
    that learns token counts fills ``usage`` (``{"prompt": n, "completion": m}``).
    """

    text: str
    element: str | None
    mode: str
    seed: str
    archetypes: list[Archetype] = field(default_factory=list)
    worldview: str | None = None
    instructions: list[str] = field(default_factory=list)
    deadline: float | None = None
    usage: dict[str, int] = field(default_factory=dict)


@dataclass
class Draft:
    """A reply being built: orchestrators produce it, guardrails shape it."""

    text: str
    archetypes: list[Archetype] = field(default_factory=list)
    challenge: dict[str, Any] | None = None
    cache_hit: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class TurnRecord:
    """The telemetry row for one turn, as written to ``consciousness_turn_meta``."""

    id: str
    created_at: datetime
    user_id: str
    session_id: str | None
    orchestrator: str
    orchestrator_mode: str
    element: str | None
    metadata: dict[str, Any]
    resonance: dict[str, Any]

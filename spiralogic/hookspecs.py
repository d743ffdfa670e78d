"""The hook contract between the Spiralogic core and its plugins.

Every hook a plugin may implement is declared here; its docstring is the
plugin author's reference. Built-in plugins use exactly these hooks.

A plugin is a module (or object) with functions decorated by
``spiralogic.hookimpl`` whose names match the hooks below. Plugins are found
through the ``spiralogic`` entry-point group and can be disabled by name in
``[default.plugins] disabled``. A hook implementation may accept any subset
of the arguments a hook declares.

Provider families (orchestrators, archetype providers, LLM providers, voice
backends, alert channels) register through a ``register`` callback: the core
owns the registries and refuses two components with the same id at start-up.
Guardrail hooks never stop at the first answer: every implementation runs and
the core combines their verdicts. An implementation that raises is logged and
counted; for guardrails the turn then fails safe (no challenge, grounding on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

import pluggy

if TYPE_CHECKING:
    from flask import Flask

    from spiralogic.components import PluginContext
    from spiralogic.turn import Assessment, Draft, Turn, TurnRecord

hookspec = pluggy.HookspecMarker("spiralogic")
hookimpl = pluggy.HookimplMarker("spiralogic")

Factory = Callable[["PluginContext"], object]
Register = Callable[[str, Factory], None]


# -- Start-up ---------------------------------------------------------------


@hookspec
def startup(app: Flask) -> None:
    """Called once, after the app is fully built and before it serves.

    Use it to warm caches or check a backend is reachable. Raising here stops
    the app from starting, so reserve it for faults the operator must fix.
    """


# -- Orchestrators -----------------------------------------------------------


@hookspec
def register_orchestrators(register: Register) -> None:
    """Register orchestrators: ``register(id, factory)``.

    ``factory(context)`` receives a :class:`spiralogic.components.PluginContext`
    and returns an object with ``respond(turn, services) -> Draft``. The core
    builds each orchestrator lazily, the first time a turn is routed to it; a
    factory that raises makes the core answer with ``baseline`` instead.
    """


# -- Archetypes --------------------------------------------------------------


@hookspec
def register_archetype_providers(register: Register) -> None:
    """Register archetype providers: ``register(id, factory)``.

    ``factory(context)`` returns an object with
    ``archetypes(turn) -> list[spiralogic.turn.Archetype]``: weighted archetypes
    for the turn's text and element. The ``spiralogic`` orchestrator fuses the
    answers of every enabled provider ("archetype fusion").
    """


# -- Generation --------------------------------------------------------------


@hookspec
def register_llm_providers(register: Register) -> None:
    """Register text generators: ``register(id, factory)``.

    ``factory(context)`` returns an object with
    ``generate(prompt: spiralogic.turn.Prompt) -> Iterator[str]`` that yields the
    reply in chunks as they become available. Which provider answers is chosen
    by the ``generation.provider`` setting.
    """


# -- Voice -------------------------------------------------------------------


@hookspec
def register_voice_backends(register: Register) -> None:
    """Register speech synthesis backends: ``register(id, factory)``.

    ``factory(context)`` returns an object with
    ``synthesize(text: str, preset: str) -> tuple[bytes, str]`` giving the audio
    and its content type. Synthesis runs in the voice worker, never on a
    request's event loop.
    """


# -- Guardrails --------------------------------------------------------------


@hookspec
def assess_input(turn: Turn, config: Mapping[str, Any]) -> Assessment | None:
    """Assess the user's message before any text is generated.

    Return a :class:`spiralogic.turn.Assessment` (or ``None`` for no opinion).
    The core merges every answer: ``crisis`` if any says so, a challenge is
    allowed only if all allow it, instructions are concatenated, and the first
    worldview given wins. Keep it cheap: it runs on every turn in every mode.
    ``turn.history`` holds what the service remembers of the user (recent
    worldviews, their last challenge and the feedback on it); ``config`` is
    this plugin's own table, ``[default.plugins.<plugin name>]``, as it is for
    every hook below that takes it.
    """


@hookspec
def shape_response(turn: Turn, draft: Draft, config: Mapping[str, Any]) -> None:
    """Shape the reply before it reaches the user, by changing ``draft`` in place.

    ``turn.assessment`` holds the merged assessment. Implementations run in
    plugin order (use ``tryfirst``/``trylast`` to move); each sees the draft as
    the previous one left it. Return nothing.
    """


# -- Evaluation --------------------------------------------------------------


@hookspec(firstresult=True)
def score_response(turn: Turn, draft: Draft, config: Mapping[str, Any]) -> float | None:
    """Score the final reply in [0, 1] for the quality gate.

    The first implementation returning a number wins; return ``None`` to let
    the next one answer. The score is stored as ``metadata.qualityScore``.
    """


# -- Operations --------------------------------------------------------------


@hookspec
def turn_completed(turn: Turn, record: TurnRecord, config: Mapping[str, Any]) -> None:
    """Observe a finished turn and the telemetry row written for it.

    Called off the request path, after the response was sent; use it for
    metrics or audit trails. It must not block for long.
    """


@hookspec
def register_alert_channels(register: Register) -> None:
    """Register alert channels: ``register(id, factory)``.

    ``factory(context)`` returns an object with ``notify(alert)`` that delivers
    an alert's state change (pending, firing, resolved) somewhere people see it.
    """


@hookspec
def alert_changed(alert: object) -> None:
    """Observe every alert state change, whatever channel delivers it."""

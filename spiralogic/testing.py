"""Run a plugin's hooks against sample turns, without a server or a database.

For plugin authors' unit tests. The hooks run through a real plugin manager
holding only the plugins given (no installed entry-point plugin joins in),
and the guardrail verdicts are combined and applied by the same functions the
service uses (``spiralogic.guardrails``): merging, failing safe when a hook
raises, dropping a forbidden challenge. ::

    from spiralogic.testing import run_guardrail
    import my_guardrail

    assessment, draft = run_guardrail(my_guardrail, "A storm is raging in me", element="water")
    assert "offer grounding" in assessment.instructions

A whole request, with routing, budgets and telemetry, needs the app instead:
see "Test it" in docs/plugins.md.
"""

from __future__ import annotations

import uuid
from typing import Any, Iterable, Mapping

import pluggy

from spiralogic import guardrails
from spiralogic.history import UserHistory
from spiralogic.plugins import PluginConfig, build_plugin_manager, first_result
from spiralogic.turn import Assessment, Draft, Turn

#: a reply with no grounding, no challenge and nothing a guardrail would object to
SAMPLE_DRAFT = "Thank you for telling me. Let's look at this together, one step at a time."
# An allow-list naming no installed plugin: only the plugins passed in are registered.
_NO_ENTRY_POINTS = ["<spiralogic.testing: none>"]


def make_turn(
    text: str,
    *,
    element: str | None = None,
    mode: str = "full",
    orchestrator: str = "spiralogic",
    user_id: str = "test-user",
    history: UserHistory | None = None,
    challenge_intensity: str = "med",
) -> Turn:
    """A turn as the pipeline builds it, before the guardrails have assessed it."""
    return Turn(
        turn_id=str(uuid.uuid4()),
        request_id=uuid.uuid4().hex,
        user_id=user_id,
        text=text,
        element=element,
        orchestrator=orchestrator,
        mode=mode,
        challenge_intensity=challenge_intensity,
        history=history or UserHistory(),
    )


def plugin_manager(*plugins: object) -> pluggy.PluginManager:
    """The service's plugin manager, holding only ``plugins`` (checked like at start-up)."""
    return build_plugin_manager(_NO_ENTRY_POINTS, [], plugins)


def configs(pm: pluggy.PluginManager, tables: Mapping[object, Mapping[str, Any]]) -> PluginConfig:
    """What each hook receives as ``config``: ``tables`` maps a plugin object to its table."""
    by_name = {pm.get_name(plugin): table for plugin, table in tables.items()}
    return lambda name: by_name.get(name, {})


def run_guardrail(
    plugin: object,
    text: str,
    *,
    element: str | None = None,
    mode: str = "full",
    draft_text: str = SAMPLE_DRAFT,
    challenge: dict[str, Any] | None = None,
    history: UserHistory | None = None,
    config: Mapping[str, Any] | None = None,
    others: Iterable[object] = (),
) -> tuple[Assessment, Draft]:
    """Assess ``text``, then shape a draft reply; return the merged assessment and the shaped draft.

    ``config`` is the plugin's own table (``[default.plugins.<name>]``);
    ``others`` are more plugins to run beside it, with empty tables, to test
    how guardrails combine. ``challenge`` is put on the draft before shaping,
    e.g. ``{"intensity": "med", "prompt": "..."}``, to see whether it survives.
    """
    pm = plugin_manager(plugin, *others)
    plugin_config = configs(pm, {plugin: config or {}})
    turn = make_turn(text, element=element, mode=mode, history=history)
    turn.assessment = guardrails.assess(pm, turn, plugin_config)
    draft = Draft(text=draft_text, challenge=challenge)
    guardrails.shape(pm, turn, draft, plugin_config)
    return turn.assessment, draft


def run_score(plugin: object, turn: Turn, draft: Draft, *, config: Mapping[str, Any] | None = None) -> float | None:
    """The plugin's ``score_response`` for a finished turn, as the pipeline asks for it."""
    pm = plugin_manager(plugin)
    return first_result(pm, "score_response", configs(pm, {plugin: config or {}}), turn=turn, draft=draft)

"""Runs every guardrail and combines their verdicts, failing safe on errors."""

from __future__ import annotations

import pluggy

from spiralogic.plugins import PluginConfig, call_each
from spiralogic.turn import Assessment, Draft, Turn


def assess(pm: pluggy.PluginManager, turn: Turn, plugin_config: PluginConfig) -> Assessment:
    """Merge every guardrail's assessment; a guardrail that raised counts as "be careful"."""
    merged = Assessment()
    for outcome in call_each(pm, "assess_input", plugin_config, turn=turn):
        if outcome.error is not None:
            merged = merged.merge(Assessment.failed_safe())
        elif isinstance(outcome.result, Assessment):
            merged = merged.merge(outcome.result)
    return merged


def shape(pm: pluggy.PluginManager, turn: Turn, draft: Draft, plugin_config: PluginConfig) -> None:
    """Let every guardrail shape the draft in turn; after a failure, drop the challenge."""
    for outcome in call_each(pm, "shape_response", plugin_config, turn=turn, draft=draft):
        if outcome.error is not None:
            draft.challenge = None
            turn.errors.append(f"guardrail:{outcome.plugin}")
    if not turn.assessment.allow_challenge:
        draft.challenge = None

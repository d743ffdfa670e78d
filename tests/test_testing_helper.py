"""spiralogic.testing: a plugin's hooks on sample turns, combined as the service combines them."""

from __future__ import annotations

import pluggy
import pytest

from spiralogic import hookimpl
from spiralogic.history import UserHistory
from spiralogic.testing import SAMPLE_DRAFT, make_turn, plugin_manager, run_guardrail, run_score
from spiralogic.turn import Assessment, Draft

CHALLENGE = {"intensity": "med", "prompt": "What are you avoiding?"}


class StormGuardrail:
    """Asks for grounding on stormy messages and marks every reply; records the config it got."""

    def __init__(self):
        self.configs = []

    @hookimpl
    def assess_input(self, turn, config):
        self.configs.append(dict(config))
        if "storm" in turn.text:
            return Assessment(instructions=["offer grounding"], tags={"storm": turn.element})
        return None

    @hookimpl
    def shape_response(self, turn, draft):
        draft.text += f" [{turn.mode}]"


class NoChallenges:
    @hookimpl
    def assess_input(self):
        return Assessment(allow_challenge=False, worldview="pragmatic")


class Broken:
    @hookimpl
    def assess_input(self, turn):
        raise RuntimeError("guardrail bug")


class Scorer:
    @hookimpl
    def score_response(self, turn, draft, config):
        return config.get("score", len(draft.text) / 100)


def test_make_turn_builds_a_turn_the_guardrails_have_not_seen_yet():
    turn = make_turn("hello", element="fire", mode="lite")
    assert (turn.text, turn.element, turn.mode, turn.orchestrator) == ("hello", "fire", "lite", "spiralogic")
    assert turn.assessment == Assessment()
    assert turn.history == UserHistory()
    assert make_turn("a").turn_id != make_turn("a").turn_id


def test_run_guardrail_assesses_then_shapes():
    plugin = StormGuardrail()
    assessment, draft = run_guardrail(plugin, "a storm inside", element="water", mode="fallback", config={"level": 2})
    assert assessment.instructions == ["offer grounding"]
    assert assessment.tags == {"storm": "water"}
    assert draft.text == SAMPLE_DRAFT + " [fallback]"
    assert plugin.configs == [{"level": 2}]


def test_a_challenge_survives_only_when_every_guardrail_allows_it():
    _, kept = run_guardrail(StormGuardrail(), "calm", challenge=CHALLENGE)
    assessment, dropped = run_guardrail(StormGuardrail(), "a storm", challenge=CHALLENGE, others=[NoChallenges()])
    assert kept.challenge == CHALLENGE
    assert dropped.challenge is None
    assert (assessment.allow_challenge, assessment.worldview, assessment.instructions) == (False, "pragmatic", ["offer grounding"])


def test_other_plugins_get_an_empty_config():
    other = StormGuardrail()
    run_guardrail(NoChallenges(), "storm", config={"only": "mine"}, others=[other])
    assert other.configs == [{}]


def test_a_guardrail_that_raises_fails_safe_like_in_the_service():
    assessment, draft = run_guardrail(Broken(), "anything", challenge=CHALLENGE)
    assert assessment.allow_challenge is False
    assert assessment.instructions == ["offer grounding"]
    assert assessment.tags == {"guardrail_error": True}
    assert draft.challenge is None


def test_installed_plugins_stay_out():
    # The crisis guardrail is installed; a message it would flag passes untouched here.
    assessment, draft = run_guardrail(StormGuardrail(), "I want to kill myself")
    assert assessment.crisis is False
    assert draft.text == SAMPLE_DRAFT + " [full]"
    assert [name for name, _ in plugin_manager().list_name_plugin() if _ is not None] == []


def test_history_reaches_the_hooks():
    seen = []

    class Reader:
        @hookimpl
        def assess_input(self, turn):
            seen.append(turn.history.worldviews)

    run_guardrail(Reader(), "hi", history=UserHistory(worldviews=["spiritual"]))
    assert seen == [["spiritual"]]


def test_a_misspelled_hook_is_refused_as_at_start_up():
    class Typo:
        @hookimpl
        def assess_inputs(self, turn):
            return None

    with pytest.raises(pluggy.PluginValidationError):
        run_guardrail(Typo(), "hi")


def test_run_score_asks_the_plugin_like_the_pipeline():
    turn, draft = make_turn("hi"), Draft(text="x" * 50)
    assert run_score(Scorer(), turn, draft) == 0.5
    assert run_score(Scorer(), turn, draft, config={"score": 0.9}) == 0.9

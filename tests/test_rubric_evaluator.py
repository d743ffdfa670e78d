"""The rubric evaluator: each criterion moves the score, the weights steer it, the pipeline stores it."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from spiralogic.state import app_state
from spiralogic.testing import make_turn, run_score
from spiralogic.turn import Assessment, Draft
from spiralogic_plugins import rubric_evaluator
from spiralogic_plugins.rubric_evaluator import RubricConfigError, rubric_from, weights_from

ON_TOPIC = (
    "Clarity about a decision like this often comes from naming what matters most. "
    "Which option keeps your mind clearest when you picture the next month?"
)
OFF_TOPIC = "Bananas are a good source of potassium and grow in warm places across the tropics all year round."
RESOURCES = " If you are in immediate danger, call your local emergency number, or a helpline near you."
SAFETY_ONLY = {"relevance_weight": 0, "safety_weight": 1, "tone_weight": 0, "length_weight": 0}


def score(text: str, reply: str, *, element: str | None = "air", config=None, challenge=None, **assessment) -> float:
    turn = make_turn(text, element=element)
    turn.assessment = Assessment(**assessment)
    return run_score(rubric_evaluator, turn, Draft(text=reply, challenge=challenge), config=config)


def marks(text: str, reply: str, *, element: str | None = "air", challenge=None, **assessment) -> dict[str, float]:
    turn = make_turn(text, element=element)
    turn.assessment = Assessment(**assessment)
    return rubric_from({}).marks(turn, Draft(text=reply, challenge=challenge))


def test_scores_are_between_zero_and_one():
    for reply in (ON_TOPIC, OFF_TOPIC, "", "word " * 1000):
        assert 0.0 <= score("Help me find clarity in this decision", reply) <= 1.0


def test_a_reply_about_the_message_and_its_element_is_more_relevant():
    text = "Help me find clarity in this decision"
    assert marks(text, ON_TOPIC)["relevance"] == 1.0
    assert marks(text, OFF_TOPIC)["relevance"] == 0.0
    assert score(text, ON_TOPIC) > score(text, OFF_TOPIC)


def test_word_forms_count_as_the_same_word():
    reply = "Worries about a move are common; the flat can wait."
    assert marks("I keep worrying about moving flats", reply, element=None)["relevance"] == 1.0


def test_outside_a_crisis_a_forbidden_challenge_fails_safety():
    challenge = {"intensity": "high", "prompt": "What are you avoiding?"}
    assert marks("hi", ON_TOPIC, challenge=challenge, allow_challenge=True)["safety"] == 1.0
    assert marks("hi", ON_TOPIC, challenge=challenge, allow_challenge=False)["safety"] == 0.0


def test_a_crisis_reply_needs_resources_and_no_challenge():
    text = "I don't see the point of going on"
    crisis = {"crisis": True, "allow_challenge": False}
    assert marks(text, ON_TOPIC + RESOURCES, **crisis)["safety"] == 1.0
    assert marks(text, ON_TOPIC, **crisis)["safety"] == 0.5
    assert marks(text, ON_TOPIC + RESOURCES, challenge={"intensity": "low", "prompt": "?"}, **crisis)["safety"] == 0.5


def test_a_crisis_reply_that_fails_safety_is_capped_at_its_safety_mark():
    text = "Help me find clarity in this decision"
    assert score(text, ON_TOPIC, crisis=True, allow_challenge=False) == 0.5
    assert score(text, ON_TOPIC + RESOURCES, crisis=True, allow_challenge=False) > 0.9


@pytest.mark.parametrize("worldview", ["pragmatic", None, "unknown"])
def test_mythopoetic_words_cost_tone_with_a_gated_or_unknown_worldview(worldview):
    mythic = "Your soul knows the way; the cosmos is listening. " + ON_TOPIC
    assert marks("Help me decide", ON_TOPIC, worldview=worldview)["tone"] == 1.0
    assert marks("Help me decide", mythic, worldview=worldview)["tone"] == 0.0


def test_users_who_welcome_mythopoetic_language_are_not_marked_down_for_it():
    mythic = "Your soul knows the way; the cosmos is listening. " + ON_TOPIC
    assert marks("Help me decide", mythic, worldview="mythopoetic-open")["tone"] == 1.0


def test_a_gated_word_in_the_challenge_counts_too():
    challenge = {"intensity": "low", "prompt": "What does your soul want here?"}
    assert marks("Help me decide", ON_TOPIC, worldview="pragmatic", challenge=challenge)["tone"] == 0.5


def test_length_outside_the_band_loses_marks_in_proportion():
    rubric = rubric_from({})
    assert marks("hi", "Six words are far too few.")["length"] == pytest.approx(6 / rubric.min_words)
    assert marks("hi", "word " * (rubric.max_words * 2))["length"] == pytest.approx(0.5)
    assert marks("hi", ON_TOPIC)["length"] == 1.0


def test_weights_decide_what_counts():
    text, reply = "Help me find clarity in this decision", OFF_TOPIC
    assert score(text, reply, config=SAFETY_ONLY) == 1.0
    assert score(text, reply, config={**SAFETY_ONLY, "safety_weight": 0, "relevance_weight": 2}) == 0.0


@pytest.mark.parametrize(
    "config", [{"tone_weight": -1}, {"length_weight": "a lot"}, {"safety_weight": True}, dict.fromkeys(SAFETY_ONLY, 0)]
)
def test_bad_weights_are_refused(config):
    with pytest.raises(RubricConfigError):
        weights_from(config)


def test_a_bad_rubric_file_stops_the_service_at_start(make_app, tmp_path):
    broken = tmp_path / "rubric.toml"
    broken.write_text("[relevance]\nstopwords = []\n")
    with pytest.raises(RubricConfigError, match="rubric"):
        make_app(**{"plugins.rubric_evaluator.rubric": str(broken)})


def test_the_pipeline_stores_the_score_as_quality_score(make_app):
    app = make_app(**{"plugins.crisis.classifier": False})
    body = {"userId": "u-rubric", "text": "Help me find clarity in this decision", "element": "air"}
    response = app.test_client().post("/api/oracle/chat", json=body)
    assert response.status_code == 200
    state = app_state(app)
    state.telemetry.flush()
    with state.engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT metadata FROM consciousness_turn_meta")).scalar_one()
    metadata = stored if isinstance(stored, dict) else json.loads(stored)
    assert 0.0 <= metadata["qualityScore"] <= 1.0

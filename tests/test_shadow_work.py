"""The shadow-work guardrail: one challenge at most, within the user's consent.

The consent rule is checked as a table; the rest runs through the app: real
turns, real feedback through POST /api/oracle/feedback, and the user history
the core loads from the database at the next turn.
"""

from __future__ import annotations

import tomllib
import uuid

import pytest

from spiralogic import hookimpl
from spiralogic.history import UserHistory
from spiralogic.settings import CONFIG_DIR
from spiralogic.state import app_state
from spiralogic.turn import ELEMENTS, Assessment, Draft, Turn
from spiralogic_plugins import shadow_work
from spiralogic_plugins.shadow_work import ShadowWorkConfigError, consented_intensity

TEMPLATES = tomllib.loads((CONFIG_DIR / "shadow_work.toml").read_text(encoding="utf-8"))
SPIRALOGIC = {"x-experiment-spiralogic": "on"}
BODY = {"text": "Help me find clarity", "element": "air"}


# -- The consent rule --------------------------------------------------------


@pytest.mark.parametrize(
    "history, ceiling, expected",
    [
        # first challenge, or history unreadable: low
        (UserHistory(), "high", "low"),
        (UserHistory(known=False), "high", "low"),
        (UserHistory(known=False, last_challenge="high", last_challenge_sentiment=1), "high", "low"),
        # no feedback: stay
        (UserHistory(last_challenge="low"), "high", "low"),
        (UserHistory(last_challenge="med"), "high", "med"),
        # neutral or better: one step up, up to the ceiling
        (UserHistory(last_challenge="low", last_challenge_sentiment=0), "high", "med"),
        (UserHistory(last_challenge="low", last_challenge_sentiment=1), "high", "med"),
        (UserHistory(last_challenge="med", last_challenge_sentiment=1), "high", "high"),
        (UserHistory(last_challenge="high", last_challenge_sentiment=1), "high", "high"),
        (UserHistory(last_challenge="med", last_challenge_sentiment=1), "med", "med"),
        (UserHistory(last_challenge="low", last_challenge_sentiment=1), "low", "low"),
        # neutral or better but the challenge was not taken up: stay
        (UserHistory(last_challenge="low", last_challenge_sentiment=1, last_challenge_accepted=False), "high", "low"),
        (UserHistory(last_challenge="low", last_challenge_sentiment=1, last_challenge_accepted=True), "high", "med"),
        # negative: one step down, never below low
        (UserHistory(last_challenge="high", last_challenge_sentiment=-1), "high", "med"),
        (UserHistory(last_challenge="med", last_challenge_sentiment=-1), "high", "low"),
        (UserHistory(last_challenge="low", last_challenge_sentiment=-1), "high", "low"),
        (UserHistory(last_challenge="med", last_challenge_sentiment=-1, last_challenge_accepted=True), "high", "low"),
        # the ceiling caps a level reached under a higher one
        (UserHistory(last_challenge="high"), "med", "med"),
        (UserHistory(last_challenge="high", last_challenge_sentiment=-1), "low", "low"),
    ],
)
def test_consent_table(history, ceiling, expected):
    assert consented_intensity(history, ceiling) == expected


# -- Through the app ---------------------------------------------------------


def challenge_of(client, user: str, **body) -> dict | None:
    response = client.post("/api/oracle/chat", json={"userId": user, **BODY, **body}, headers=SPIRALOGIC)
    assert response.status_code == 200, response.get_json()
    data = response.get_json()["data"]
    return data["challenge"] and {**data["challenge"], "turnId": data["turnId"]}


def walk(app, user: str, ratings: list[int | None]) -> list[str]:
    """One turn per rating, each rated as given (None: not rated); the intensity of every
    turn's challenge, plus that of the turn after the last rating."""
    client = app.test_client()
    intensities = []
    for rating in [*ratings, None]:
        challenge = challenge_of(client, user)
        intensities.append(challenge["intensity"])
        app_state(app).telemetry.flush()  # the next turn's history reads this turn's row
        if rating is not None:
            response = client.post("/api/oracle/feedback", json={"userId": user, "turnId": challenge["turnId"], "rating": rating})
            assert response.status_code == 201, response.get_json()
    return intensities


def test_neutral_or_better_feedback_escalates_up_to_the_ceiling(make_app):
    app = make_app(shadow_challenge_intensity="high")
    assert walk(app, "climber", [3, 5, 4]) == ["low", "med", "high", "high"]


def test_negative_feedback_is_never_escalated_and_steps_down(make_app):
    app = make_app(shadow_challenge_intensity="high")
    assert walk(app, "wary", [2, 2]) == ["low", "low", "low"]
    assert walk(app, "turned", [5, 5, -1]) == ["low", "med", "high", "med"]


def test_no_feedback_stays_at_the_current_level(make_app):
    app = make_app(shadow_challenge_intensity="high")
    assert walk(app, "quiet", [4, None, None]) == ["low", "med", "med", "med"]


def test_a_low_ceiling_is_never_exceeded(make_app):
    app = make_app(shadow_challenge_intensity="low")
    assert walk(app, "eager", [5, 5, 5]) == ["low", "low", "low", "low"]


def test_the_default_ceiling_is_med(make_app):
    assert walk(make_app(), "keen", [5, 5]) == ["low", "med", "med"]


def test_prompt_is_one_template_of_its_intensity_and_element_seeded_by_the_turn(app, client):
    seen = set()
    for _ in range(12):
        challenge = challenge_of(client, f"user-{uuid.uuid4().hex[:8]}")
        assert challenge["prompt"] in TEMPLATES["low"]["air"]
        seen.add(challenge["prompt"])
    assert len(seen) > 1  # varies across turns
    turn = Turn(turn_id="fixed-seed", request_id="r", user_id="u", text="x", element="water", orchestrator="spiralogic")
    prompts = set()
    for _ in range(3):
        draft = Draft(text="reply")
        shadow_work.shape_response(turn, draft, {})
        prompts.add(draft.challenge["prompt"])
    assert len(prompts) == 1  # same turn, same prompt


def test_a_turn_without_element_uses_the_neutral_templates(client):
    challenge = challenge_of(client, "no-element", element=None)
    assert challenge["prompt"] in TEMPLATES["low"]["neutral"]


def test_baseline_turns_get_no_challenge(client):
    response = client.post("/api/oracle/chat", json={"userId": "plain", **BODY})
    assert response.headers["x-orchestrator"] == "baseline"
    assert response.get_json()["data"]["challenge"] is None


def test_orchestrators_setting_chooses_who_offers_challenges(make_app):
    app = make_app(**{"plugins.shadow_work": {"orchestrators": ["baseline"]}})
    response = app.test_client().post("/api/oracle/chat", json={"userId": "plain", **BODY})
    assert response.get_json()["data"]["challenge"]["intensity"] == "low"


class Assessor:
    """A throwaway guardrail giving one fixed verdict."""

    def __init__(self, name: str, assessment: Assessment):
        self.__name__ = name
        self.assessment = assessment

    @hookimpl
    def assess_input(self, turn):
        return self.assessment


class ChallengeSetter:
    """Another plugin's challenge, added before every other shaper."""

    __name__ = "challenge_setter"
    CHALLENGE = {"prompt": "Which promise are you keeping out of habit?", "intensity": "high"}

    @hookimpl(tryfirst=True)
    def shape_response(self, draft):
        draft.challenge = dict(self.CHALLENGE)


class FailingVoice:
    """An LLM provider that always fails, so turns answer in fallback mode."""

    __name__ = "failing_voice"

    @hookimpl
    def register_llm_providers(self, register):
        register("failing", lambda context: self)

    def generate(self, prompt):
        raise RuntimeError("upstream down")


@pytest.mark.parametrize(
    "assessment",
    [pytest.param(Assessment(crisis=True), id="crisis"), pytest.param(Assessment(allow_challenge=False), id="not-allowed")],
)
def test_no_challenge_when_the_assessment_forbids_one(make_app, assessment):
    app = make_app(plugins=[Assessor("verdict", assessment)])
    assert challenge_of(app.test_client(), "careful") is None


def test_no_challenge_in_crisis_even_if_another_plugin_adds_one(make_app):
    app = make_app(plugins=[Assessor("verdict", Assessment(crisis=True)), ChallengeSetter()])
    assert challenge_of(app.test_client(), "careful") is None


def test_no_challenge_in_fallback_mode(make_app):
    app = make_app(plugins=[FailingVoice()], **{"generation.provider": "failing"})
    response = app.test_client().post("/api/oracle/chat", json={"userId": "fallen", **BODY}, headers=SPIRALOGIC)
    data = response.get_json()["data"]
    assert data["mode"] == "fallback"
    assert data["challenge"] is None


@pytest.mark.parametrize(
    "assessment, mode",
    [(Assessment(crisis=True), "full"), (Assessment(allow_challenge=False), "lite"), (Assessment(), "fallback")],
)
def test_the_hook_removes_any_challenge_when_suppressed(assessment, mode):
    turn = Turn(turn_id="t", request_id="r", user_id="u", text="x", element="air", orchestrator="spiralogic", mode=mode)
    turn.assessment = assessment
    draft = Draft(text="reply", challenge=dict(ChallengeSetter.CHALLENGE))
    shadow_work.shape_response(turn, draft, {})
    assert draft.challenge is None


def test_lite_turns_keep_the_shaper():
    turn = Turn(turn_id="t", request_id="r", user_id="u", text="x", element="fire", orchestrator="spiralogic", mode="lite")
    draft = Draft(text="reply")
    shadow_work.shape_response(turn, draft, {})
    assert draft.challenge["prompt"] in TEMPLATES["low"]["fire"]


def test_at_most_one_challenge_another_plugins_stands(make_app):
    app = make_app(plugins=[ChallengeSetter()])
    challenge = challenge_of(app.test_client(), "doubly")
    assert {"prompt": challenge["prompt"], "intensity": challenge["intensity"]} == ChallengeSetter.CHALLENGE


# -- Templates ---------------------------------------------------------------


def test_every_intensity_has_prompts_for_every_element():
    for intensity in shadow_work.INTENSITIES:
        for element in ("neutral", *ELEMENTS):
            prompts = TEMPLATES[intensity][element]
            assert prompts and all(prompt.strip().endswith("?") for prompt in prompts), (intensity, element)


def test_a_broken_templates_file_is_refused_with_its_place(tmp_path):
    broken = tmp_path / "challenges.toml"
    broken.write_text('[low]\nneutral = ["What is here?"]\n', encoding="utf-8")
    with pytest.raises(ShadowWorkConfigError, match=r"low\.air"):
        shadow_work.load_challenges(broken)

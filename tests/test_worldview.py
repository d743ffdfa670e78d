"""The worldview guardrail: classification, and mythopoetic language gated behind user signals.

The vocabulary the replies are checked against is read from
config/worldview.toml by the test itself, with its own matcher, so the test
does not trust the plugin to say what it removed.
"""

from __future__ import annotations

import json
import random
import re
import tomllib
import uuid

import pytest
import sqlalchemy as sa

from spiralogic import hookimpl
from spiralogic.history import UserHistory
from spiralogic.settings import CONFIG_DIR
from spiralogic.state import app_state
from spiralogic.tables import ConsciousnessTurnMeta
from spiralogic.turn import Assessment, Draft, Turn
from spiralogic_plugins import worldview

LEXICON = tomllib.loads((CONFIG_DIR / "worldview.toml").read_text(encoding="utf-8"))
VOCABULARY = LEXICON["gate"]["vocabulary"]
PLAIN = LEXICON["gate"]["plain"]
MYTHIC = re.compile(r"\b(?:%s)(?:e?s|'s)?\b" % "|".join(re.escape(term) for term in VOCABULARY), re.IGNORECASE)
SPIRALOGIC = {"x-experiment-spiralogic": "on"}
PRAGMATIC_TEXT = "Help me make a practical plan for my work"
OPEN_TEXT = "My soul feels lost in the cosmos"


def make_turn(text: str, history: list[str] = (), worldview_: str | None = None) -> Turn:
    turn = Turn(turn_id=str(uuid.uuid4()), request_id="r", user_id="u", text=text, element="air", orchestrator="spiralogic")
    turn.history = UserHistory(worldviews=list(history))
    turn.assessment = Assessment(worldview=worldview_)
    return turn


def classify(text: str, history: list[str] = ()) -> tuple[str, str]:
    assessment = worldview.assess_input(make_turn(text, history), {})
    return assessment.worldview, assessment.tags["worldview_signal"]


# -- Classification ----------------------------------------------------------


@pytest.mark.parametrize(
    "text, history, expected",
    [
        # the playbook's load-test messages
        ("Help me find clarity in this decision", [], ("pragmatic", "text")),
        ("I feel stuck and need grounding", [], ("pragmatic", "default")),
        ("Guide me through this emotional challenge", [], ("pragmatic", "default")),
        ("I need energy to take action", [], ("pragmatic", "text")),
        ("Connect me with deeper wisdom", [], ("pragmatic", "default")),
        # pragmatic framing
        ("What are the steps to change careers?", [], ("pragmatic", "text")),
        ("I have a deadline at work and no plan", [], ("pragmatic", "text")),
        # spiritual framing
        ("I have been praying about this and my faith feels thin", [], ("spiritual", "text")),
        ("My meditation practice has stalled", [], ("spiritual", "text")),
        ("Is this part of God's plan for me?", [], ("spiritual", "text")),
        # mythopoetic openness: the user's own words are the signal, and win over practical ones
        ("My soul feels lost in the cosmos", [], ("mythopoetic-open", "text")),
        ("Which archetype is guiding me right now?", [], ("mythopoetic-open", "text")),
        ("The universe keeps sending me signs", [], ("mythopoetic-open", "text")),
        ("I want a practical plan for my soul's work", [], ("mythopoetic-open", "text")),
        ("This feels like my destiny", [], ("mythopoetic-open", "text")),
        ("What does the hero\u2019s journey say about this?", [], ("mythopoetic-open", "text")),
        # in any case
        ("MY SOUL FEELS LOST IN THE COSMOS", [], ("mythopoetic-open", "text")),
        ("WHAT ARE THE STEPS TO CHANGE CAREERS?", [], ("pragmatic", "text")),
        # whole words only
        ("The music was soulful and spiritually I felt nothing", [], ("pragmatic", "default")),
        # no cue: the most recent recorded worldview carries over
        ("What should I do next?", ["mythopoetic-open", "pragmatic"], ("mythopoetic-open", "history")),
        ("What should I do next?", ["spiritual"], ("spiritual", "history")),
        ("What should I do next?", ["someone-elses-label", "pragmatic"], ("pragmatic", "history")),
        # a cue in the message beats history
        ("Give me practical steps", ["mythopoetic-open"], ("pragmatic", "text")),
    ],
)
def test_classification_of_labelled_examples(text, history, expected):
    assert classify(text, history) == expected


def test_every_gated_word_is_itself_a_signal_of_openness():
    for term in VOCABULARY:
        assert classify(f"I keep thinking about {term}")[0] == LEXICON["gate"]["signals"], term


# -- The gate ----------------------------------------------------------------


def gate(text: str) -> str:
    draft = Draft(text=text)
    worldview.shape_response(make_turn("x", worldview_="pragmatic"), draft, {})
    return draft.text


def test_sentences_are_rephrased_with_plain_words_keeping_capitals_and_plurals():
    assert gate("Listen to your soul. The universe is on your side. Our souls know.") == (
        "Listen to your heart. Life is on your side. Our hearts know."
    )


def test_the_gate_finds_the_vocabulary_in_any_case_and_keeps_the_capital():
    assert gate("Trust the UNIVERSE. Your Soul knows.") == "Trust life. Your Heart knows."


def test_sentences_with_words_lacking_a_plain_equivalent_are_removed():
    assert gate("Let's plan the week. Your karma will decide! What is step one?") == "Let's plan the week. What is step one?"


def test_a_reply_with_nothing_left_becomes_the_plain_replacement():
    assert gate("It is written in the cosmos and in your karma.") == LEXICON["gate"]["replacement"]


def test_plain_words_keep_a_and_an_right():
    for term, word in PLAIN.items():
        assert (term[0] in "aeiou") == (word[0] in "aeiou"), (term, word)
        assert not MYTHIC.search(word), word


def test_a_missing_or_unknown_worldview_is_gated_too():
    for label in (None, "unheard-of"):
        draft = Draft(text="Your destiny awaits. Breathe.")
        worldview.shape_response(make_turn("x", worldview_=label), draft, {})
        assert draft.text == "Your direction awaits. Breathe."


def test_open_and_spiritual_users_are_not_gated():
    for label in ("mythopoetic-open", "spiritual"):
        draft = Draft(text="Your soul knows the way through the cosmos.")
        worldview.shape_response(make_turn("x", worldview_=label), draft, {})
        assert draft.text == "Your soul knows the way through the cosmos."


def test_shadow_work_templates_are_free_of_the_vocabulary():
    templates = tomllib.loads((CONFIG_DIR / "shadow_work.toml").read_text(encoding="utf-8"))
    for intensity, elements in templates.items():
        for element, prompts in elements.items():
            for prompt in prompts:
                assert not MYTHIC.search(prompt), (intensity, element, prompt)


# -- Through the app ---------------------------------------------------------


def mythic_reply(seed: str) -> str:
    """A reply drenched in the gated vocabulary, plus one plain sentence, varying with the seed."""
    rng = random.Random(seed)
    sentences = [f"Your {term} is part of this, {rng.choice(['gently', 'quietly', 'surely'])}." for term in rng.sample(VOCABULARY, 4)]
    return " ".join([*sentences, "What is one thing you could do today?"])


class MythicVoice:
    """An LLM provider that ignores the worldview: the gate is the safety net for every provider."""

    __name__ = "mythic_voice"

    @hookimpl
    def register_llm_providers(self, register):
        register("mythic", lambda context: self)

    def generate(self, prompt):
        yield mythic_reply(prompt.seed)


@pytest.fixture
def mythic_app(make_app):
    return make_app(plugins=[MythicVoice()], **{"generation.provider": "mythic"})


def say(app, user: str, text: str, headers=SPIRALOGIC) -> dict:
    response = app.test_client().post("/api/oracle/chat", json={"userId": user, "text": text, "element": "aether"}, headers=headers)
    assert response.status_code == 200, response.get_json()
    return response.get_json()["data"]


def stored_metadata(app, turn_id: str) -> dict:
    state = app_state(app)
    state.telemetry.flush()
    table = ConsciousnessTurnMeta.__table__
    with state.engine.connect() as conn:
        value = conn.execute(sa.select(table.c.metadata).where(table.c.id == uuid.UUID(turn_id))).scalar_one()
    return value if isinstance(value, dict) else json.loads(value)


@pytest.mark.parametrize("provider", ["mythic", "template"])
def test_a_pragmatic_user_never_gets_mythopoetic_vocabulary(make_app, provider):
    app = make_app(plugins=[MythicVoice()], **{"generation.provider": provider})
    for seed in range(30):
        headers = SPIRALOGIC if seed % 2 else {}  # both orchestrators
        data = say(app, f"pragmatic-{seed}", PRAGMATIC_TEXT, headers)
        assert data["message"].strip()
        assert not MYTHIC.search(data["message"]), data["message"]
        if data["challenge"]:
            assert not MYTHIC.search(data["challenge"]["prompt"])


def test_a_user_who_uses_the_language_gets_it_back_untouched(mythic_app):
    data = say(mythic_app, "open", OPEN_TEXT)
    assert data["message"] == mythic_reply(data["turnId"])
    metadata = stored_metadata(mythic_app, data["turnId"])
    assert metadata["worldview"] == "mythopoetic-open"
    assert metadata["guardrails"]["worldview_signal"] == "text"


def test_history_carries_the_signal_across_turns(mythic_app):
    first = say(mythic_app, "returning", OPEN_TEXT)
    app_state(mythic_app).telemetry.flush()  # telemetry is asynchronous: the next turn reads this row
    second = say(mythic_app, "returning", "What should I do next?")
    assert second["message"] == mythic_reply(second["turnId"])
    metadata = stored_metadata(mythic_app, second["turnId"])
    assert (metadata["worldview"], metadata["guardrails"]["worldview_signal"]) == ("mythopoetic-open", "history")

    third = say(mythic_app, "returning", "Now give me practical steps")
    assert not MYTHIC.search(third["message"])
    assert stored_metadata(mythic_app, third["turnId"])["worldview"] == "pragmatic"
    assert first["turnId"] != second["turnId"] != third["turnId"]


def test_a_new_user_without_signal_is_recorded_as_pragmatic_by_default(mythic_app):
    data = say(mythic_app, "newcomer", "I feel stuck and need grounding")
    assert not MYTHIC.search(data["message"])
    metadata = stored_metadata(mythic_app, data["turnId"])
    assert (metadata["worldview"], metadata["guardrails"]["worldview_signal"]) == ("pragmatic", "default")


def test_a_broken_lexicon_is_refused_with_its_reason(tmp_path):
    path = tmp_path / "lexicon.toml"
    path.write_text(
        """
[classify]
precedence = ["open", "plain"]
default = "plain"
gated = ["plain"]
[cues]
open = ["myth"]
plain = ["plan"]
[gate]
signals = "open"
vocabulary = ["soul"]
replacement = "Let's keep it simple."
[gate.plain]
moonlight = "light"
""",
        encoding="utf-8",
    )
    with pytest.raises(worldview.WorldviewConfigError, match=r"gate\.plain"):
        worldview.load_rules(path)

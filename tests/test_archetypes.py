"""The elemental archetype provider, and archetypes in spiralogic turns (full mode only)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from spiralogic.settings import CONFIG_DIR
from spiralogic.state import app_state
from spiralogic.turn import ELEMENTS
from spiralogic_plugins.elemental_archetypes import ArchetypeConfigError, ElementalArchetypes

CANARY = {"x-experiment-spiralogic": "on"}
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
#: the playbook's k6 cases and the archetype each one should lead with
K6_TOPS = [
    ("Help me find clarity in this decision", "air", "sage"),
    ("I feel stuck and need grounding", "earth", "guardian"),
    ("Guide me through this emotional challenge", "water", "healer"),
    ("I need energy to take action", "fire", "warrior"),
    ("Connect me with deeper wisdom", "aether", "mystic"),
]
ELEMENT_TOPS = {"air": "sage", "earth": "guardian", "water": "healer", "fire": "warrior", "aether": "mystic"}
NEUTRAL_TEXT = "something about it"
# Generous budgets: a slow CI machine must not turn a full turn lite.
ROOMY = {"soft_budget_ms": 5000, "hard_budget_ms": 10000}


@pytest.fixture(scope="module")
def provider() -> ElementalArchetypes:
    return ElementalArchetypes.from_file(CONFIG_DIR / "archetypes.toml")


def weights(archetypes) -> dict[str, float]:
    return {a.name: a.weight for a in archetypes}


# -- The provider ------------------------------------------------------------------


@pytest.mark.parametrize("element", ELEMENTS)
def test_each_element_has_several_archetypes_led_by_its_own(provider, element):
    archetypes = provider.weigh(NEUTRAL_TEXT, element)
    assert len(archetypes) >= 3
    assert archetypes[0].name == ELEMENT_TOPS[element]
    assert [a.weight for a in archetypes] == sorted((a.weight for a in archetypes), reverse=True)
    assert sum(a.weight for a in archetypes) == pytest.approx(1, abs=1e-3)
    assert {a.source for a in archetypes} == {"elemental"}


def test_elements_lead_with_different_archetypes(provider):
    assert len({provider.weigh(NEUTRAL_TEXT, element)[0].name for element in ELEMENTS}) == len(ELEMENTS)


@pytest.mark.parametrize(("text", "element", "top"), K6_TOPS)
def test_playbook_cases_lead_with_their_archetype(provider, text, element, top):
    assert provider.weigh(text, element)[0].name == top


@pytest.mark.parametrize(
    ("word", "archetype"),
    [
        ("clarity", "sage"),
        ("decide", "sage"),
        ("think", "sage"),
        ("stuck", "guardian"),
        ("ground", "guardian"),
        ("stable", "guardian"),
        ("feel", "healer"),
        ("emotions", "healer"),
        ("heart", "healer"),
        ("energy", "warrior"),
        ("action", "warrior"),
        ("courage", "warrior"),
        ("wisdom", "mystic"),
        ("soul", "mystic"),
        ("deeper", "mystic"),
    ],
)
@pytest.mark.parametrize("element", ["air", "water"])
def test_a_cue_word_adds_weight_to_its_archetype(provider, word, archetype, element):
    before = weights(provider.weigh(NEUTRAL_TEXT, element)).get(archetype, 0)
    after = weights(provider.weigh(f"{NEUTRAL_TEXT} {word}", element))[archetype]
    assert after > before


def test_enough_cues_outweigh_the_element(provider):
    assert provider.weigh(NEUTRAL_TEXT, "air")[0].name == "sage"
    assert provider.weigh("I feel stuck, I need grounding and something stable", "air")[0].name == "guardian"


def test_same_normalised_input_same_answer(provider):
    first = provider.weigh("Help me find CLARITY in this decision!!", "air")
    assert provider.weigh("help me   find clarity in this decision", "air") == first
    assert provider.weigh("Ｈｅｌｐ me find clarity in this decision.", "air") == first
    assert provider.weigh("Help me find clarity in this decision", "air") == first


def test_a_repeated_word_counts_once(provider):
    assert provider.weigh("heart", "air") == provider.weigh("heart heart heart, heart", "air")


def test_without_an_element_only_cues_speak(provider):
    assert provider.weigh(NEUTRAL_TEXT, None) == []
    assert [a.name for a in provider.weigh("I need energy and courage", None)] == ["warrior"]


# -- The file ------------------------------------------------------------------------

VALID = """
[elements.air]
sage = 0.5
[elements.earth]
guardian = 1
[elements.water]
healer = 1
[elements.fire]
warrior = 1
[elements.aether]
mystic = 1
[cues.guardian]
weight = 0.5
stems = ["Stuck"]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "archetypes.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_custom_file_drives_the_weights(tmp_path):
    provider = ElementalArchetypes.from_file(write(tmp_path, VALID))
    assert [(a.name, a.weight) for a in provider.weigh("so STUCK", "air")] == [("guardian", 0.5), ("sage", 0.5)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace("[elements.aether]\nmystic = 1\n", ""), "elements"),
        (lambda t: t.replace("sage = 0.5", "sage = -0.5"), "greater than or equal to 0"),
        (lambda t: t.replace("sage = 0.5", "sage = 0"), "at least one archetype"),
        (lambda t: t.replace('stems = ["Stuck"]', 'stems = ["st*"]'), "pattern"),
        (lambda t: t.replace('stems = ["Stuck"]', "stems = []"), "at least 1"),
        (lambda t: t.replace("weight = 0.5", "weight = 0"), "greater than 0"),
        (lambda t: t + "\n[elements.metal]\nsmith = 1\n", "metal"),
        (lambda t: t + "\nextra = 1\n", "extra"),
        (lambda t: t + "\n[[broken", "cannot read"),
    ],
)
def test_a_malformed_file_is_refused_with_a_clear_message(tmp_path, change, message):
    with pytest.raises(ArchetypeConfigError, match=message):
        ElementalArchetypes.from_file(write(tmp_path, change(VALID)))


def test_a_missing_file_is_refused(tmp_path):
    with pytest.raises(ArchetypeConfigError, match="not found"):
        ElementalArchetypes.from_file(tmp_path / "nope.toml")


# -- In the service -------------------------------------------------------------------


def test_the_provider_is_an_entry_point_plugin(app):
    registry = app_state(app).registries["archetype_providers"]
    assert "elemental" in registry.ids()
    assert registry.owner("elemental") == "elemental_archetypes"


@pytest.mark.postgres
@pytest.mark.parametrize(("text", "element", "top"), K6_TOPS)
def test_full_turns_carry_archetypes_to_body_and_row(make_app, database_url, text, element, top):
    app = make_app(database_url, **ROOMY)
    response = app.test_client().post("/api/oracle/chat", json={"userId": "u", "text": text, "element": element}, headers=CANARY)
    data = response.get_json()["data"]
    assert data["mode"] == "full"
    assert data["archetypes"][0]["name"] == top
    assert top in data["message"]  # the voice names the strongest archetype
    state = app_state(app)
    state.telemetry.flush()
    with state.engine.connect() as conn:
        resonance = conn.execute(sa.text("SELECT resonance FROM consciousness_turn_meta")).scalar_one()
    resonance = resonance if isinstance(resonance, dict) else json.loads(resonance)
    assert resonance["top"] == top
    assert resonance["archetypes"] == {a["name"]: a["weight"] for a in data["archetypes"]}


def test_lite_turns_carry_no_archetypes(app):
    state = app_state(app)
    state.flags.set("forced_mode", "lite", actor="t", reason="t", now=T0)
    client = app.test_client()
    for text, element, _ in K6_TOPS:
        response = client.post("/api/oracle/chat", json={"userId": "u", "text": text, "element": element}, headers=CANARY)
        body = response.get_json()
        assert response.headers["x-orchestrator-mode"] == "lite"
        assert body["data"]["archetypes"] == []
        assert body["meta"]["cacheHit"] is False
    state.telemetry.flush()
    with state.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT resonance FROM consciousness_turn_meta")).scalars().all()
    assert len(rows) == len(K6_TOPS)
    assert all("top" not in (r if isinstance(r, dict) else json.loads(r)) for r in rows)


def test_a_broken_archetypes_file_leaves_turns_answering_without_archetypes(make_app, tmp_path):
    app = make_app(**{"plugins.elemental.archetypes": str(write(tmp_path, "[elements]\nair = 3\n"))}, **ROOMY)
    response = app.test_client().post("/api/oracle/chat", json={"userId": "u", "text": "I need energy", "element": "fire"}, headers=CANARY)
    assert response.status_code == 200
    assert response.get_json()["data"]["message"].strip()
    assert response.get_json()["data"]["archetypes"] == []
    assert app_state(app).counters["archetype_provider_unavailable"] == 1

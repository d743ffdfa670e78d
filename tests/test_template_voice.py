"""The template voice: real templates from config/, seeded variety, modes, worldview gating, hostile input."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pluggy
import pytest

from spiralogic import hookspecs
from spiralogic.components import PluginContext
from spiralogic.turn import ELEMENTS, MODES, Archetype, Prompt
from spiralogic_plugins import template_voice
from spiralogic_plugins.template_voice import FOCUS_MAX_CHARS, PLANS, TemplateConfigError, TemplateVoice, clean_text

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
TEMPLATES = CONFIG_DIR / "voice_templates.toml"
ALL_ELEMENTS = (*ELEMENTS, None)
SEEDS = [f"turn-{i}" for i in range(20)]
ARCHETYPES = [Archetype("Sage", 0.2), Archetype("Cartographer", 0.7), Archetype("Trickster", 0.1)]


@pytest.fixture(scope="module")
def voice() -> TemplateVoice:
    context = PluginContext(id="template", config={"templates": "voice_templates.toml"}, config_dir=str(CONFIG_DIR))
    return TemplateVoice.from_context(context)


@pytest.fixture(scope="module")
def raw() -> dict:
    return tomllib.loads(TEMPLATES.read_text(encoding="utf-8"))


def make_prompt(**fields) -> Prompt:
    values = {"text": "Help me find clarity in this decision", "element": "air", "mode": "full", "seed": "turn-0"}
    return Prompt(**{**values, **fields})


def reply(voice: TemplateVoice, **fields) -> str:
    return "".join(voice.generate(make_prompt(**fields)))


def as_regex(template: str) -> re.Pattern[str]:
    """A pattern matching every sentence ``template`` can render, whatever its placeholders hold."""
    parts = re.split(r"\$(focus|archetype)\b", template)
    literal = [re.escape(part.replace("$$", "$")) for part in parts[::2]]
    return re.compile(".+".join(literal), re.DOTALL)


def patterns(raw: dict, element: str | None, slot: str, kinds: tuple[str, ...] = ("plain", "mythic")) -> list:
    table = raw[element or "neutral"][slot]
    return [as_regex(t) for kind in kinds for t in table.get(kind, [])]


def matches_any(sentence: str, regexes: list[re.Pattern[str]]) -> bool:
    return any(r.fullmatch(sentence) for r in regexes)


# -- Plugin wiring -----------------------------------------------------------


def test_registers_the_template_provider_through_the_hook():
    pm = pluggy.PluginManager("spiralogic")
    pm.add_hookspecs(hookspecs)
    pm.register(template_voice, name="template_voice")
    registered = {}
    pm.hook.register_llm_providers(register=lambda cid, factory: registered.setdefault(cid, factory))
    assert list(registered) == ["template"]
    built = registered["template"](PluginContext(id="template", config={}, config_dir=str(CONFIG_DIR)))
    assert reply(built)


def test_every_mode_the_core_knows_has_a_plan():
    assert set(PLANS) == set(MODES)


# -- Replies -----------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("element", ALL_ELEMENTS)
def test_every_element_and_mode_gives_a_reply(voice, raw, element, mode):
    sentences = voice.compose(make_prompt(element=element, mode=mode, archetypes=ARCHETYPES))
    assert sentences and all(s.strip() == s and s[-1] in ".?!" for s in sentences)
    assert all("$" not in s for s in sentences)
    first_slot = PLANS[mode][0]
    assert matches_any(sentences[0], patterns(raw, element, first_slot))


@pytest.mark.parametrize("element", ALL_ELEMENTS)
def test_fallback_is_one_or_two_concise_sentences_from_its_own_templates(voice, raw, element):
    own = patterns(raw, element, "fallback")
    for seed in SEEDS:
        concise = voice.compose(make_prompt(element=element, mode="fallback", seed=seed))
        grounded = voice.compose(
            make_prompt(element=element, mode="fallback", seed=seed, instructions=["offer grounding"])
        )
        full = reply(voice, element=element, mode="full", seed=seed, archetypes=ARCHETYPES)
        assert len(concise) == 1 and matches_any(concise[0], own)
        assert len(grounded) == 2 and matches_any(grounded[0], own)
        assert len(" ".join(grounded)) < len(full)


@pytest.mark.parametrize("element", ALL_ELEMENTS)
def test_lite_is_full_without_the_archetype_line(voice, raw, element):
    for seed in SEEDS:
        full = voice.compose(make_prompt(element=element, seed=seed, archetypes=ARCHETYPES))
        lite = voice.compose(make_prompt(element=element, seed=seed, mode="lite", archetypes=ARCHETYPES))
        assert len(full) == 4 and len(lite) == 3
        assert matches_any(full[2], patterns(raw, element, "archetype"))
        assert not any(matches_any(s, patterns(raw, element, "archetype")) for s in lite)


def test_same_seed_gives_the_same_reply_and_seeds_vary(voice):
    for element in ALL_ELEMENTS:
        for mode in MODES:
            assert reply(voice, element=element, mode=mode, seed="fixed") == reply(
                voice, element=element, mode=mode, seed="fixed"
            )
            distinct = {reply(voice, element=element, mode=mode, seed=seed) for seed in SEEDS}
            assert len(distinct) >= (3 if mode == "fallback" else 8), (element, mode)


def test_chunks_stream_sentence_by_sentence_and_join_to_the_reply(voice):
    prompt = make_prompt(archetypes=ARCHETYPES, instructions=["offer grounding"])
    chunks = list(voice.generate(prompt))
    assert len(chunks) == 5
    assert all(c.endswith(" ") for c in chunks[:-1]) and not chunks[-1].endswith(" ")
    assert "".join(chunks) == " ".join(voice.compose(prompt))


def test_unknown_mode_is_refused(voice):
    with pytest.raises(ValueError, match="unknown mode"):
        voice.compose(make_prompt(mode="turbo"))


# -- Worldview, grounding, archetypes ----------------------------------------


def test_pragmatic_worldview_never_uses_mythic_variants(voice, raw):
    mythic_seen = False
    for element in ALL_ELEMENTS:
        slots = {slot for plan in PLANS.values() for slot in plan}
        mythic = [r for slot in slots for r in patterns(raw, element, slot, ("mythic",))]
        plain = [r for slot in slots for r in patterns(raw, element, slot, ("plain",))]
        for mode in MODES:
            for seed in SEEDS:
                fields = dict(element=element, mode=mode, seed=seed, archetypes=ARCHETYPES)
                fields["instructions"] = ["offer grounding"]
                for sentence in voice.compose(make_prompt(worldview="pragmatic", **fields)):
                    assert matches_any(sentence, plain) and not matches_any(sentence, mythic), sentence
                open_minded = voice.compose(make_prompt(worldview="mythopoetic", **fields))
                mythic_seen |= any(matches_any(s, mythic) for s in open_minded)
    assert mythic_seen, "other worldviews should still hear mythic variants"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("element", ALL_ELEMENTS)
def test_grounding_instruction_adds_one_grounding_line(voice, raw, element, mode):
    grounding = patterns(raw, element, "grounding")
    for seed in SEEDS[:5]:
        without = voice.compose(make_prompt(element=element, mode=mode, seed=seed))
        with_ = voice.compose(make_prompt(element=element, mode=mode, seed=seed, instructions=["offer grounding"]))
        assert len(with_) == len(without) + 1
        assert sum(matches_any(s, grounding) for s in with_) == 1
        assert not any(matches_any(s, grounding) for s in without)


@pytest.mark.parametrize("element", ALL_ELEMENTS)
def test_top_archetype_is_named_in_full_mode_only(voice, element):
    for seed in SEEDS:
        full = reply(voice, element=element, seed=seed, archetypes=ARCHETYPES)
        lite = reply(voice, element=element, seed=seed, mode="lite", archetypes=ARCHETYPES)
        assert "Cartographer" in full and "Sage" not in full and "Trickster" not in full
        assert "Cartographer" not in lite


def test_no_archetypes_means_no_archetype_line(voice, raw):
    for seed in SEEDS:
        sentences = voice.compose(make_prompt(seed=seed))
        assert len(sentences) == 3
        assert not any(matches_any(s, patterns(raw, "air", "archetype")) for s in sentences)


# -- Focus phrase ------------------------------------------------------------


@pytest.mark.parametrize(
    "text, focus",
    [
        ("Help me find clarity in this decision", "clarity in this decision"),
        ("Please, guide me through my grief.", "your grief"),
        ("Connect me with deeper wisdom", "deeper wisdom"),
        ("I feel stuck and need grounding", "you feel stuck and need grounding"),
        ("I’m afraid I was wrong about myself!", "you're afraid you were wrong about yourself"),
        ("Work is overwhelming me", "work is overwhelming you"),
        ("Help me", ""),
        ("", ""),
    ],
)
def test_focus_is_the_gist_in_the_listeners_words(voice, text, focus):
    assert voice._focus_rules.focus(text) == focus


def test_focus_is_capped_at_a_word_boundary(voice):
    words = [f"word{i}" for i in range(40)]
    focus = voice._focus_rules.focus("Help me find " + " ".join(words))
    assert 40 < len(focus) <= FOCUS_MAX_CHARS
    assert focus.split() == words[: len(focus.split())]


def test_focus_is_named_at_most_once_per_reply(voice):
    focus = "clarity in this decision"
    replies = [reply(voice, element=e, seed=f"many-{i}") for e in ALL_ELEMENTS for i in range(200)]
    assert all(r.count(focus) <= 1 for r in replies)
    assert sum(focus in r for r in replies) >= 100


# -- Hostile input -----------------------------------------------------------

FORMAT_LIKE = ["{0}", "{__class__}", "{text.__class__.__mro__}", "$focus ${archetype} $$ %s"]
ODD = [
    "a\x00b\x00c",
    "😀" * 4000,
    "\u202eevil\u200f text \u200e",
    "",
    "   \n\t  ",
    "\ud800 lone surrogate",
    "Z̸̢͉a̵l̷g̶o̸ 𝕦𝕟𝕚𝕔𝕠𝕕𝕖 \u0000\u001b[31m",
]


@pytest.mark.parametrize("text", FORMAT_LIKE)
def test_format_syntax_in_user_text_is_echoed_literally(voice, text):
    replies = [reply(voice, text=text, element=e, seed=s, mode=m) for e in ALL_ELEMENTS for s in SEEDS for m in MODES]
    assert any(text in r for r in replies)
    assert not any("<class" in r for r in replies)


@pytest.mark.parametrize("text", ODD)
def test_odd_input_never_breaks_the_voice(voice, text):
    for element in ALL_ELEMENTS:
        for mode in MODES:
            for seed in SEEDS[:5]:
                prompt = make_prompt(text=text, element=element, mode=mode, seed=seed, archetypes=ARCHETYPES)
                sentences = voice.compose(prompt)
                out = "".join(voice.generate(prompt))
                assert out and out.encode("utf-8")
                assert not any(ch in out for ch in "\x00\x1b\u202e\u200f\u200e")
                assert not any(s.endswith(": .") or ": ;" in s for s in sentences)
                assert len(voice._focus_rules.focus(text)) <= FOCUS_MAX_CHARS
                assert len(out) < 1000


@pytest.mark.parametrize(
    "text, cleaned",
    [
        ("Help me find clarity", "Help me find clarity"),
        ("  two   spaces ", "two spaces"),
        ("tab\tand\nnewline", "tab and newline"),
        ("no\u00a0break", "no break"),
        ("zero\u200bwidth \u202ebidi\x00", "zerowidth bidi"),
        ("cafe\u0301", "caf\u00e9"),
    ],
)
def test_clean_text_keeps_printable_text_and_drops_the_rest(text, cleaned):
    assert clean_text(text) == cleaned


def test_archetype_names_are_cleaned_too(voice):
    hostile = [Archetype("{0}\x00\u202e" + "x" * 500, 0.9)]
    out = reply(voice, archetypes=hostile)
    assert "{0}" in out and "\x00" not in out and "\u202e" not in out and "x" * 41 not in out


# -- Templates file ----------------------------------------------------------


@pytest.mark.parametrize("element", ALL_ELEMENTS)
def test_openings_and_reflections_have_real_variety(raw, element):
    for slot in ("opening", "reflection"):
        table = raw[element or "neutral"][slot]
        assert len(table["plain"]) >= 6 and len(table["mythic"]) >= 4
        assert len(set(table["plain"] + table["mythic"])) == len(table["plain"]) + len(table["mythic"])


def test_missing_templates_file_raises_at_construction(tmp_path):
    context = PluginContext(id="template", config={}, config_dir=str(tmp_path))
    with pytest.raises(TemplateConfigError, match="not found.*voice_templates.toml"):
        TemplateVoice.from_context(context)


@pytest.mark.parametrize(
    "old, new, error",
    [
        ("[water.fallback]", "[water.fallbacks]", "water.fallback"),
        ('"Let\'s bring some clarity to this together."', '"Let\'s bring $clarity."', "unknown placeholder"),
        ('"The $archetype rides the high wind with you, seeing far."', '"Nobody rides."', "must mention"),
        ('"Let\'s look at the bigger picture together."', '"Costs $5."', "invalid placeholder"),
        ("[focus.reflect]", "[focus.reflect]\nbroken", "cannot read"),
    ],
)
def test_invalid_templates_raise_at_construction(tmp_path, old, new, error):
    text = TEMPLATES.read_text(encoding="utf-8")
    assert text.count(old) == 1
    (tmp_path / "voice.toml").write_text(text.replace(old, new), encoding="utf-8")
    context = PluginContext(id="template", config={"templates": "voice.toml"}, config_dir=str(tmp_path))
    with pytest.raises(TemplateConfigError, match=error):
        TemplateVoice.from_context(context)

"""The template voice: the embedded default text generator (provider id ``template``).

The service must answer in every mode even with no model configured and every
upstream down, so its default voice needs no network and no model: it composes
replies from the reviewed sentences in ``config/voice_templates.toml``. Nothing
it says is written in this module ("templates, not scripts"), so the voice can
be edited without touching code.

Each turn picks its variants with ``random.Random(prompt.seed)``: a reply is
reproducible for a given seed (tests, caching), yet the same question does not
always get the same sentence. Variants marked mythic are never used for a
pragmatic worldview.

User text is data. It is cleaned, shortened to a focus phrase and substituted
with :class:`string.Template`, which never interprets the values it inserts; no
user text ever reaches ``str.format``.
"""

from __future__ import annotations

import random
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, Iterator, Mapping

from spiralogic import hookimpl
from spiralogic.components import PluginContext
from spiralogic.datafiles import data_file, read_toml
from spiralogic.hookspecs import Register
from spiralogic.turn import ELEMENTS, Archetype, Prompt

DEFAULT_TEMPLATES = "voice_templates.toml"
NEUTRAL = "neutral"
SLOTS = ("opening", "reflection", "archetype", "grounding", "invitation", "fallback")
#: which slots each mode voices, in order; archetype and grounding only when the turn calls for them
PLANS = {
    "full": ("opening", "reflection", "archetype", "grounding", "invitation"),
    "lite": ("opening", "reflection", "grounding", "invitation"),
    "fallback": ("fallback", "grounding"),
}
PLAIN_ONLY_WORLDVIEWS = frozenset({"pragmatic"})
GROUNDING_INSTRUCTION = "offer grounding"
FOCUS_MAX_CHARS = 60
ARCHETYPE_MAX_CHARS = 40
# Only the start of a message can become its focus; don't clean 64 KB to keep 60 chars.
FOCUS_SCAN_CHARS = 1000
EDGE_PUNCTUATION = " .,;:!?…-–—"


class TemplateConfigError(ValueError):
    """The templates file is missing, unreadable or malformed."""


@hookimpl
def register_llm_providers(register: Register) -> None:
    register("template", TemplateVoice.from_context)


# -- Templates ---------------------------------------------------------------


@dataclass(frozen=True)
class Variants:
    """The interchangeable sentences of one slot of one element."""

    plain: tuple[Template, ...]
    mythic: tuple[Template, ...]

    def pool(self, mythic: bool, has_focus: bool) -> list[Template]:
        """The variants usable for this turn: no mythic ones unless allowed, no $focus without a focus."""
        candidates = self.plain + self.mythic if mythic else self.plain
        return [t for t in candidates if has_focus or "focus" not in t.get_identifiers()]


def _parse_template(text: Any, where: str, slot: str) -> Template:
    if not isinstance(text, str) or not text.strip():
        raise TemplateConfigError(f"{where}: expected a non-empty string")
    template = Template(text)
    if not template.is_valid():
        raise TemplateConfigError(f"{where}: invalid placeholder (write $$ for a dollar sign): {text!r}")
    names = set(template.get_identifiers())
    allowed = {"focus", "archetype"} if slot == "archetype" else {"focus"}
    if names - allowed:
        raise TemplateConfigError(f"{where}: unknown placeholder {sorted(names - allowed)} in {text!r}")
    if slot == "archetype" and "archetype" not in names:
        raise TemplateConfigError(f"{where}: an archetype variant must mention $archetype: {text!r}")
    return template


def _parse_list(raw: Any, where: str, slot: str) -> tuple[Template, ...]:
    if not isinstance(raw, list):
        raise TemplateConfigError(f"{where}: expected a list of sentences")
    return tuple(_parse_template(text, f"{where}[{i}]", slot) for i, text in enumerate(raw))


def _parse_variants(raw: Any, where: str, slot: str) -> Variants:
    if not isinstance(raw, dict) or "plain" not in raw:
        raise TemplateConfigError(f"{where}: missing table with a 'plain' list")
    variants = Variants(
        plain=_parse_list(raw["plain"], f"{where}.plain", slot),
        mythic=_parse_list(raw.get("mythic", []), f"{where}.mythic", slot),
    )
    if not variants.pool(mythic=False, has_focus=False):
        raise TemplateConfigError(f"{where}.plain: needs at least one variant without $focus")
    return variants


def _parse_elements(data: Mapping[str, Any]) -> dict[str, dict[str, Variants]]:
    elements = {}
    for element in (NEUTRAL, *ELEMENTS):
        table = data.get(element)
        if not isinstance(table, dict):
            raise TemplateConfigError(f"missing table [{element}]")
        elements[element] = {slot: _parse_variants(table.get(slot), f"{element}.{slot}", slot) for slot in SLOTS}
    return elements


# -- Focus -------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Text safe to echo: no control, format (bidi, zero-width) or surrogate characters; spaces collapsed."""
    # Printable text (most messages) holds no such character and no space but " ": no per-character pass.
    kept = text if text.isprintable() else "".join(" " if ch.isspace() else ch for ch in text if ch.isspace() or not _is_other(ch))
    return " ".join(unicodedata.normalize("NFC", kept).split())


def _is_other(ch: str) -> bool:
    return unicodedata.category(ch).startswith("C")


def cap_phrase(phrase: str, limit: int) -> str:
    """``phrase`` cut to at most ``limit`` characters, at a word boundary when there is one."""
    if len(phrase) <= limit:
        return phrase
    head = phrase[: limit + 1]
    return head.rsplit(" ", 1)[0] if " " in head else phrase[:limit]


@dataclass(frozen=True)
class FocusRules:
    """How a message becomes the short phrase the voice may echo back."""

    lead_ins: tuple[tuple[str, ...], ...]
    reflect: Mapping[str, str]
    reflect_pattern: re.Pattern[str] | None

    @classmethod
    def parse(cls, raw: Any) -> FocusRules:
        if not isinstance(raw, dict):
            raise TemplateConfigError("missing table [focus]")
        lead_ins, reflect = raw.get("lead_ins", []), raw.get("reflect", {})
        if not isinstance(lead_ins, list) or not all(isinstance(x, str) and x.strip() for x in lead_ins):
            raise TemplateConfigError("focus.lead_ins: expected a list of phrases")
        if not isinstance(reflect, dict) or not all(isinstance(v, str) for v in reflect.values()):
            raise TemplateConfigError("focus.reflect: expected a table of phrase = replacement")
        # Longest first, so "help me find" wins over "help me" and "i am" over "i".
        words = sorted((tuple(x.casefold().split()) for x in lead_ins), key=len, reverse=True)
        mapping = {" ".join(k.casefold().split()): v for k, v in reflect.items()}
        keys = sorted(mapping, key=len, reverse=True)
        alternation = "|".join(re.escape(k) for k in keys)
        pattern = re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE) if keys else None
        return cls(tuple(words), mapping, pattern)

    def focus(self, text: str) -> str:
        """The gist of ``text`` in the listener's words, or "" when nothing is left.

        "Help me find clarity in my decision." gives "clarity in your decision".
        """
        words = self._drop_lead_ins(clean_text(text[:FOCUS_SCAN_CHARS].replace("\u2019", "'")).split())
        if words and words[0][:1].isupper() and words[0][1:].islower():
            words[0] = words[0].lower()  # sentence-initial capital, now mid-sentence
        phrase = self._reflect(" ".join(words))
        return cap_phrase(phrase.strip(EDGE_PUNCTUATION), FOCUS_MAX_CHARS).strip(EDGE_PUNCTUATION)

    def _drop_lead_ins(self, words: list[str]) -> list[str]:
        bare = [w.strip(EDGE_PUNCTUATION).casefold() for w in words]
        start, matched = 0, True
        while matched:
            matched = False
            for lead in self.lead_ins:
                if tuple(bare[start : start + len(lead)]) == lead:
                    start, matched = start + len(lead), True
                    break
        return words[start:]

    def _reflect(self, phrase: str) -> str:
        if self.reflect_pattern is None:
            return phrase
        return self.reflect_pattern.sub(lambda m: self.reflect.get(m.group(0).casefold(), m.group(0)), phrase)


# -- The voice ---------------------------------------------------------------


class TemplateVoice:
    """An LLM provider that composes replies from templates; ``generate`` streams sentences."""

    def __init__(self, elements: dict[str, dict[str, Variants]], focus_rules: FocusRules):
        self._elements = elements
        self._focus_rules = focus_rules

    @classmethod
    def from_context(cls, context: PluginContext) -> TemplateVoice:
        path = data_file(context.config, "templates", DEFAULT_TEMPLATES, "template", TemplateConfigError, context.config_dir)
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: Path) -> TemplateVoice:
        data = read_toml(path, "voice templates", TemplateConfigError)
        try:
            return cls(_parse_elements(data), FocusRules.parse(data.get("focus")))
        except TemplateConfigError as exc:
            raise TemplateConfigError(f"voice templates {path}: {exc}") from None

    def generate(self, prompt: Prompt) -> Iterator[str]:
        """Yield the reply sentence by sentence; every chunk but the last ends with a space."""
        sentences = self.compose(prompt)
        for i, sentence in enumerate(sentences):
            yield sentence if i == len(sentences) - 1 else sentence + " "

    def compose(self, prompt: Prompt) -> list[str]:
        """The reply's sentences, chosen for this prompt's element, mode, worldview and seed."""
        if prompt.mode not in PLANS:
            raise ValueError(f"unknown mode {prompt.mode!r}; expected one of {', '.join(PLANS)}")
        rng = random.Random(prompt.seed)
        table = self._elements.get(prompt.element or NEUTRAL, self._elements[NEUTRAL])
        mythic = prompt.worldview not in PLAIN_ONLY_WORLDVIEWS
        values = {"focus": self._focus_rules.focus(prompt.text), "archetype": top_archetype(prompt.archetypes)}
        sentences = []
        for slot in PLANS[prompt.mode]:
            if not _wanted(slot, prompt, values["archetype"]):
                continue
            template = rng.choice(table[slot].pool(mythic, has_focus=bool(values["focus"])))
            sentences.append(template.substitute(values).strip())
            if "focus" in template.get_identifiers():
                values["focus"] = ""  # name the user's focus once per reply, not in every sentence
        return sentences


def top_archetype(archetypes: list[Archetype]) -> str:
    """The strongest archetype's name, cleaned for echoing; "" when there is none."""
    if not archetypes:
        return ""
    name = clean_text(max(archetypes, key=lambda a: a.weight).name)
    return cap_phrase(name, ARCHETYPE_MAX_CHARS)


def _wanted(slot: str, prompt: Prompt, archetype: str) -> bool:
    if slot == "archetype":
        return bool(archetype)
    if slot == "grounding":
        return any(i.strip().casefold() == GROUNDING_INSTRUCTION for i in prompt.instructions)
    return True

"""Worldview detection and the mythopoetic gate.

``assess_input`` classifies the user's framing as one of the worldviews of
``config/worldview.toml`` (``pragmatic``, ``spiritual``, ``mythopoetic-open``)
from cue words in their message; with no cue it carries over their most
recent recorded worldview (``turn.history.worldviews``), and with no history
it falls back to the default, ``pragmatic``: the playbook gates mythopoetic
language behind user signals, so no signal means none of it. The verdict is
stored as ``metadata.worldview`` and where it came from (``text``,
``history`` or ``default``) as the tag ``worldview_signal``, so adaptation
accuracy can be measured against labelled turns.

``shape_response`` runs after the other shapers (``trylast``) and keeps the
mythopoetic vocabulary out of replies to gated worldviews, whatever the
provider wrote: a sentence holding such words is rephrased with plain
equivalents when there are some for all of them, removed otherwise. The challenge prompt gets the
same treatment (dropped if nothing is left). Replies to users who gave the
signal are left untouched; using the vocabulary is itself that signal.

Settings, ``[default.plugins.worldview]``: ``lexicon`` (file name relative to
the config directory, default ``worldview.toml``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

from spiralogic import hookimpl
from spiralogic.datafiles import data_file, read_toml
from spiralogic.turn import Assessment, Draft, Turn

DEFAULT_LEXICON = "worldview.toml"
# A sentence ends at . ! ? or … followed by white space; the space is kept with it.
SENTENCE_END = re.compile(r"(?<=[.!?…])(\s+)")


class WorldviewConfigError(ValueError):
    """The lexicon file or the plugin's settings are unusable."""


# -- Word lists --------------------------------------------------------------


def _canonical(term: str) -> str:
    return " ".join(term.split()).casefold().replace("\u2019", "'")


def _term_pattern(term: str) -> str:
    return r"\s+".join(re.escape(word).replace("'", "['\u2019]") for word in term.split())


@dataclass(frozen=True)
class Lexicon:
    """Whole words or phrases, matched ignoring case, plural ``s``/``es`` and a possessive."""

    terms: frozenset[str]
    #: matches the text as written, in any case: for :meth:`replace`, which keeps a capital
    pattern: re.Pattern[str]
    #: the same for casefolded text: twice as fast as ignoring case, and it runs on every reply
    folded: re.Pattern[str]

    @classmethod
    def of(cls, terms: Iterable[str]) -> Lexicon:
        canonical = frozenset(_canonical(term) for term in terms)
        # Longest first, so "the universe" wins over "universe".
        alternation = "|".join(_term_pattern(term) for term in sorted(canonical, key=len, reverse=True))
        source = rf"(?<!\w)(?P<term>{alternation})(?P<suffix>e?s|['\u2019]s)?(?!\w)"
        return cls(canonical, re.compile(source, re.IGNORECASE), re.compile(source))

    def search(self, text: str) -> bool:
        """Whether ``text`` holds any of the terms."""
        return self.folded.search(text.casefold()) is not None

    def found(self, text: str) -> set[str]:
        return {_canonical(match.group("term")) for match in self.folded.finditer(text.casefold())}

    def replace(self, text: str, plain: Mapping[str, str]) -> str:
        """``text`` with each term swapped for its plain word, keeping a capital and the suffix."""

        def swap(match: re.Match[str]) -> str:
            word = plain[_canonical(match.group("term"))]
            if match.group("term")[0].isupper():
                word = word[0].upper() + word[1:]
            return word + (match.group("suffix") or "")

        return self.pattern.sub(swap, text)


# -- Rules -------------------------------------------------------------------


@dataclass(frozen=True)
class WorldviewRules:
    """The classifier and the gate, as configured in the lexicon file."""

    precedence: tuple[str, ...]
    default: str
    gated: frozenset[str]
    cues: Mapping[str, Lexicon]
    vocabulary: Lexicon
    plain: Mapping[str, str]
    replacement: str

    def classify(self, text: str, history: Iterable[str]) -> tuple[str, str]:
        """The worldview and where it came from: ``text``, ``history`` or ``default``."""
        for worldview in self.precedence:
            if self.cues[worldview].search(text):
                return worldview, "text"
        recent = next((worldview for worldview in history if worldview in self.cues), None)
        return (recent, "history") if recent else (self.default, "default")

    def gate(self, text: str) -> str:
        """``text`` free of the vocabulary: sentences rephrased or removed ("" if none is left)."""
        if not self.vocabulary.search(text):
            return text
        pieces = SENTENCE_END.split(text)
        kept = []
        for sentence, space in zip(pieces[::2], pieces[1::2] + [""]):
            terms = self.vocabulary.found(sentence)
            if terms <= self.plain.keys():
                kept.append(self.vocabulary.replace(sentence, self.plain) + space)
        return "".join(kept).rstrip()


def parse_rules(data: Mapping[str, Any]) -> WorldviewRules:
    classify, gate = _table(data, "classify"), _table(data, "gate")
    precedence = tuple(_words(classify.get("precedence"), "classify.precedence"))
    vocabulary = _words(gate.get("vocabulary"), "gate.vocabulary")
    signals, default = gate.get("signals"), classify.get("default")
    gated = frozenset(_words(classify.get("gated", []), "classify.gated", allow_empty=True))
    cues = _table(data, "cues")
    if set(cues) != set(precedence) or not {signals, default} | gated <= set(precedence):
        raise WorldviewConfigError("classify.precedence must list every [cues] worldview; default, gated and gate.signals must name them")
    # The vocabulary is a cue too: a user who uses it has given the signal for it.
    lexicons = {name: Lexicon.of(_words(cues[name], f"cues.{name}") + (vocabulary if name == signals else [])) for name in precedence}
    plain, replacement = _plain_words(gate, vocabulary)
    return WorldviewRules(precedence, default, gated, lexicons, Lexicon.of(vocabulary), plain, replacement)


def _plain_words(gate: Mapping[str, Any], vocabulary: list[str]) -> tuple[dict[str, str], str]:
    """The plain equivalents by canonical term, and the replacement reply."""
    plain = {_canonical(term): word for term, word in _table(gate, "plain").items()}
    if not plain.keys() <= {_canonical(term) for term in vocabulary} or not all(isinstance(w, str) and w for w in plain.values()):
        raise WorldviewConfigError("gate.plain: every key must be in gate.vocabulary and every value a non-empty word")
    replacement = gate.get("replacement")
    if not isinstance(replacement, str) or not replacement.strip():
        raise WorldviewConfigError("gate.replacement: expected a sentence")
    return plain, replacement.strip()


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    table = data.get(name)
    if not isinstance(table, dict):
        raise WorldviewConfigError(f"missing table [{name}]")
    return table


def _words(raw: Any, where: str, allow_empty: bool = False) -> list[str]:
    if not isinstance(raw, list) or not (raw or allow_empty) or not all(isinstance(w, str) and w.strip() for w in raw):
        raise WorldviewConfigError(f"{where}: expected a list of words")
    return raw


@lru_cache(maxsize=8)
def load_rules(path: Path) -> WorldviewRules:
    """Read once per process; restart to pick up edits."""
    data = read_toml(path, "worldview lexicon", WorldviewConfigError)
    try:
        return parse_rules(data)
    except WorldviewConfigError as exc:
        raise WorldviewConfigError(f"worldview lexicon {path}: {exc}") from exc


def rules_for(config: Mapping[str, Any]) -> WorldviewRules:
    return load_rules(data_file(config, "lexicon", DEFAULT_LEXICON, "worldview", WorldviewConfigError))


# -- The hooks ---------------------------------------------------------------


@hookimpl
def assess_input(turn: Turn, config: Mapping[str, Any]) -> Assessment:
    worldview, signal = rules_for(config).classify(turn.text, turn.history.worldviews)
    return Assessment(worldview=worldview, tags={"worldview_signal": signal})


@hookimpl(trylast=True)
def shape_response(turn: Turn, draft: Draft, config: Mapping[str, Any]) -> None:
    rules = rules_for(config)
    worldview = turn.assessment.worldview
    # Fail safe: a worldview that is missing (a classifier failed) or unknown is gated too.
    if worldview in rules.precedence and worldview not in rules.gated:
        return
    draft.text = rules.gate(draft.text) or rules.replacement
    if draft.challenge is not None:
        prompt = rules.gate(draft.challenge["prompt"])
        draft.challenge = {**draft.challenge, "prompt": prompt} if prompt else None

"""The crisis lexicon: signal phrases per category, minus the idioms that mimic them.

The data lives in ``config/crisis_lexicon.toml``. Matching is on whole words,
case-insensitively, after the message is normalised the way the file's
entries are written (no apostrophes, single spaces). A signal inside an idiom
("I could just die of embarrassment") does not count; any other signal does.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spiralogic.datafiles import read_toml

APOSTROPHES = re.compile("['\u2018\u2019\u02bc`]")


class LexiconError(ValueError):
    """The lexicon file is missing, unreadable or holds a bad entry."""


def normalise(text: str) -> str:
    """The message as lexicon entries are written: casefolded, no apostrophes, single spaces."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(APOSTROPHES.sub("", folded).split())


@dataclass(frozen=True)
class LexiconMatch:
    category: str
    phrase: str


class Lexicon:
    """``match(text)`` names the category of the first signal outside every idiom."""

    def __init__(self, categories: dict[str, re.Pattern[str]], idioms: re.Pattern[str] | None):
        self._categories = categories
        self._idioms = idioms

    @classmethod
    def from_file(cls, path: Path) -> Lexicon:
        data = read_toml(path, "crisis lexicon", LexiconError)
        raw = data.get("categories")
        if not isinstance(raw, dict) or not raw:
            raise LexiconError(f"{path}: missing table [categories]")
        categories = {name: _compile(entries, f"{path}: categories.{name}") for name, entries in raw.items()}
        idioms = data.get("idioms", {}).get("patterns", [])
        return cls(categories, _compile(idioms, f"{path}: idioms.patterns") if idioms else None)

    @property
    def categories(self) -> tuple[str, ...]:
        return tuple(self._categories)

    def match(self, text: str) -> LexiconMatch | None:
        text = normalise(text)
        idiom_spans = [m.span() for m in self._idioms.finditer(text)] if self._idioms else []
        hits = [
            (m.start(), name, m.group(0))
            for name, pattern in self._categories.items()
            for m in pattern.finditer(text)
            if not any(_overlaps(m.span(), span) for span in idiom_spans)
        ]
        if not hits:
            return None
        _, category, phrase = min(hits)
        return LexiconMatch(category, phrase)


def _compile(entries: Any, where: str) -> re.Pattern[str]:
    """One whole-word alternation of ``entries``; each is checked alone, so an error names it."""
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) and e.strip() for e in entries):
        raise LexiconError(f"{where}: expected a non-empty list of expressions")
    for entry in entries:
        try:
            re.compile(entry)
        except re.error as exc:
            raise LexiconError(f"{where}: bad expression {entry!r}: {exc}") from None
    alternation = "|".join(f"(?:{entry})" for entry in entries)
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)", re.IGNORECASE)


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]

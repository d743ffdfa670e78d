"""The rubric evaluator: a quality score in [0, 1] for every reply, no model needed.

``score_response`` rates the final (shaped) reply on four criteria, each in
[0, 1], and returns their weighted mean; the core stores it as
``metadata.qualityScore``, which the launch gate compares with the baseline.

- relevance: the reply takes up the message's own words (stemmed, stop-words
  left out; ``overlap_target`` of them earn full marks) and, when the turn has
  an element, speaks to it (one of the element's cue words): the mean of both;
- safety: outside a crisis, no challenge where the guardrails forbade one; in
  a crisis, help resources present (a resource cue) and no challenge, half
  each. A crisis reply's score never exceeds its safety mark, so a reply that
  fails it cannot pass the gate on its other merits;
- tone: a reply to a gated worldview (pragmatic, or unknown) holds none of the
  mythopoetic vocabulary of ``config/worldview.toml``; each word costs half;
- length: inside ``[min_words, max_words]``; shorter or longer loses marks in
  proportion.

Word lists and the length band are in ``config/rubric.toml``; the weights are
the settings ``[default.plugins.rubric_evaluator]``. docs/safety.md explains
the rubric with examples.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import snowballstemmer

from spiralogic import hookimpl
from spiralogic.settings import CONFIG_DIR
from spiralogic.state import app_state
from spiralogic.turn import Draft, Turn
from spiralogic_plugins.worldview import WorldviewRules, load_rules

PLUGIN = "rubric_evaluator"
CRITERIA = ("relevance", "safety", "tone", "length")
DEFAULT_WEIGHTS = {"relevance": 0.35, "safety": 0.3, "tone": 0.2, "length": 0.15}
DEFAULT_RUBRIC = "rubric.toml"
WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")
#: each gated word in a reply to a pragmatic user costs this much tone
TONE_COST_PER_WORD = 0.5
_stemmer = snowballstemmer.stemmer("english")


class RubricConfigError(ValueError):
    """The rubric file or the plugin's settings are unusable."""


def words(text: str) -> list[str]:
    """The words of ``text``, casefolded."""
    return WORD.findall(text.casefold())


def stems(text: str) -> list[str]:
    """The words of ``text``, casefolded, apostrophes dropped, stemmed."""
    return stemmed(words(text))


def stemmed(tokens: list[str]) -> list[str]:
    """``tokens`` (casefolded words) stemmed, apostrophes dropped."""
    return _stemmer.stemWords([w.replace("'", "").replace("\u2019", "") for w in tokens])


@dataclass(frozen=True)
class Rubric:
    stopwords: frozenset[str]
    overlap_target: int
    element_cues: Mapping[str, frozenset[str]]
    resource_cues: tuple[str, ...]
    worldview: WorldviewRules
    min_words: int
    max_words: int

    def relevance(self, turn: Turn, reply_words: list[str]) -> float:
        reply = set(stemmed(reply_words))
        asked = set(stems(turn.text)) - self.stopwords
        overlap = min(1.0, len(asked & reply) / min(self.overlap_target, len(asked))) if asked else 1.0
        cues = self.element_cues.get(turn.element or "")
        if not cues:
            return overlap
        return (overlap + (1.0 if cues & reply else 0.0)) / 2

    def safety(self, turn: Turn, draft: Draft) -> float:
        if not turn.assessment.crisis:
            return 0.0 if draft.challenge and not turn.assessment.allow_challenge else 1.0
        text = draft.text.casefold()
        resources = any(cue in text for cue in self.resource_cues)
        return 0.5 * resources + 0.5 * (draft.challenge is None)

    def tone(self, turn: Turn, draft: Draft) -> float:
        rules = self.worldview
        worldview = turn.assessment.worldview
        if worldview in rules.precedence and worldview not in rules.gated:
            return 1.0
        said = draft.text + " " + ((draft.challenge or {}).get("prompt") or "")
        return max(0.0, 1.0 - TONE_COST_PER_WORD * len(rules.vocabulary.found(said)))

    def length(self, reply_words: list[str]) -> float:
        count = len(reply_words)
        if count < self.min_words:
            return count / self.min_words
        return min(1.0, self.max_words / count)

    def marks(self, turn: Turn, draft: Draft) -> dict[str, float]:
        reply_words = words(draft.text)  # split once: relevance and length both read them
        return {
            "relevance": self.relevance(turn, reply_words),
            "safety": self.safety(turn, draft),
            "tone": self.tone(turn, draft),
            "length": self.length(reply_words),
        }


def score(rubric: Rubric, weights: Mapping[str, float], turn: Turn, draft: Draft) -> float:
    """The weighted mean of the marks, capped by the safety mark in a crisis."""
    marks = rubric.marks(turn, draft)
    total = sum(weights[c] * marks[c] for c in CRITERIA) / sum(weights.values())
    if turn.assessment.crisis:
        total = min(total, marks["safety"])
    return round(total, 4)


def weights_from(config: Mapping[str, Any]) -> dict[str, float]:
    weights = {c: config.get(f"{c}_weight", DEFAULT_WEIGHTS[c]) for c in CRITERIA}
    for criterion, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise RubricConfigError(f"plugins.rubric_evaluator.{criterion}_weight must be a number >= 0")
    if not sum(weights.values()):
        raise RubricConfigError("plugins.rubric_evaluator: at least one weight must be above 0")
    return weights


def rubric_from(config: Mapping[str, Any]) -> Rubric:
    name = config.get("rubric", DEFAULT_RUBRIC)
    if not isinstance(name, str) or not name:
        raise RubricConfigError(f"plugins.rubric_evaluator.rubric must be a file name, not {name!r}")
    return load_rubric(name)


@functools.cache
def load_rubric(name: str) -> Rubric:
    """Read once per process, keyed by file name (a cheap key: this runs for every turn); restart to pick up edits."""
    path = Path(CONFIG_DIR) / name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        relevance, length = data["relevance"], data["length"]
        rubric = Rubric(
            stopwords=frozenset(_stemmed(relevance["stopwords"])),
            overlap_target=int(relevance["overlap_target"]),
            element_cues={element: frozenset(_stemmed(cues)) for element, cues in relevance["element_cues"].items()},
            resource_cues=tuple(cue.casefold() for cue in data["safety"]["resource_cues"]),
            worldview=load_rules(Path(CONFIG_DIR) / data["tone"]["worldview_lexicon"]),
            min_words=int(length["min_words"]),
            max_words=int(length["max_words"]),
        )
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise RubricConfigError(f"rubric {path}: {type(exc).__name__}: {exc}") from exc
    if rubric.overlap_target < 1 or not 0 < rubric.min_words <= rubric.max_words:
        raise RubricConfigError(f"rubric {path}: need overlap_target >= 1 and 0 < min_words <= max_words")
    return rubric


def _stemmed(words: list[str]) -> list[str]:
    return [stem for word in words for stem in stems(word)]


@hookimpl
def startup(app) -> None:
    """Read the settings and files now: a mistake stops the service at start, not on a turn."""
    config = app_state(app).plugin_config(PLUGIN)
    weights_from(config)
    rubric_from(config)


@hookimpl
def score_response(turn: Turn, draft: Draft, config: Mapping[str, Any]) -> float:
    return score(rubric_from(config), weights_from(config), turn, draft)

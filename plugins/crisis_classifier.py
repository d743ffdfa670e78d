"""The crisis classifier: nearest labelled examples in a sentence-embedding space.

Each sentence of a message is embedded (``crisis_encoder``) and compared with
the examples of ``config/crisis_prototypes.toml``. A sentence's score is how
much closer it is to the crisis examples than to the safe ones: the mean
cosine similarity of its ``k`` nearest crisis examples minus that of its ``k``
nearest safe ones. The message takes the score of its highest-scoring
sentence, so one alarming sentence in a long message still counts, and the
category of that sentence's nearest crisis example.

There is no training step beyond embedding the examples once: adding a
sentence to the file is how the classifier learns a new phrasing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from spiralogic.datafiles import read_toml

SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|\n+")
#: sentences embedded per message; later ones are not read (cost grows with each)
MAX_SENTENCES = 6
NEIGHBOURS = 3


class Encoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray: ...


class PrototypeError(ValueError):
    """The examples file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class Prototypes:
    """Labelled example sentences: crisis ones by category, and safe ones."""

    crisis: dict[str, list[str]]
    safe: list[str]

    @classmethod
    def from_file(cls, path: Path) -> Prototypes:
        data = read_toml(path, "crisis examples", PrototypeError)
        crisis, safe = data.get("crisis"), data.get("safe")
        for name, table in (("crisis", crisis), ("safe", safe)):
            if not isinstance(table, dict) or not table or not all(_sentences(v) for v in table.values()):
                raise PrototypeError(f"{path}: [{name}] must map groups to non-empty lists of sentences")
        return cls(crisis=dict(crisis), safe=[s for group in safe.values() for s in group])


def _sentences(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(s, str) and s.strip() for s in value)


@dataclass(frozen=True)
class Verdict:
    score: float
    category: str


def split_sentences(text: str) -> list[str]:
    """The message's first sentences, the unit the classifier scores."""
    sentences = [s.strip() for s in SENTENCE_END.split(text) if s.strip()]
    return sentences[:MAX_SENTENCES] or [text]


class PrototypeClassifier:
    """``verdict(text)`` scores a message; higher means closer to the crisis examples."""

    def __init__(self, encoder: Encoder, prototypes: Prototypes, neighbours: int = NEIGHBOURS):
        self._encoder = encoder
        self._neighbours = neighbours
        labelled = [(category, s) for category, group in prototypes.crisis.items() for s in group]
        self._categories = [category for category, _ in labelled]
        self._crisis = encoder.encode([s for _, s in labelled])
        self._safe = encoder.encode(prototypes.safe)

    def verdict(self, text: str) -> Verdict:
        vectors = self._encoder.encode(split_sentences(text))
        crisis_sims = vectors @ self._crisis.T
        scores = self._top_mean(crisis_sims) - self._top_mean(vectors @ self._safe.T)
        best = int(np.argmax(scores))
        return Verdict(float(scores[best]), self._categories[int(np.argmax(crisis_sims[best]))])

    def leave_one_out(self) -> tuple[np.ndarray, np.ndarray]:
        """Each example's score against all the others, and whether it is a crisis one.

        The calibration the threshold is chosen from (``load/crisis_eval.py
        --calibrate``): it needs no data beyond the examples themselves.
        """
        examples = np.concatenate([self._crisis, self._safe])
        sims = examples @ examples.T
        np.fill_diagonal(sims, -np.inf)
        crisis = len(self._crisis)
        scores = self._top_mean(sims[:, :crisis]) - self._top_mean(sims[:, crisis:])
        return scores, np.arange(len(examples)) < crisis

    def _top_mean(self, sims: np.ndarray) -> np.ndarray:
        k = min(self._neighbours, sims.shape[1])
        return np.sort(sims, axis=1)[:, -k:].mean(axis=1)

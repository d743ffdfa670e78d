"""The elemental archetype provider (component id ``elemental``).

It maps a turn's element (air, earth, water, fire, aether) and the words of
its text to weighted archetypes: each element starts from base weights, and
cue words add weight to the archetype they evoke ("stuck", "grounding" lean
towards the guardian). Every name, weight and cue lives in
``config/archetypes.toml`` (format documented there), so the mapping can be
tuned without touching code.

The answer depends only on the element and the set of normalised words of the
text (Unicode-folded, lower-cased, punctuation dropped), so the same
normalised input always gets the same archetypes.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from spiralogic import hookimpl
from spiralogic.components import PluginContext
from spiralogic.datafiles import data_file, read_toml
from spiralogic.hookspecs import Register
from spiralogic.turn import ELEMENTS, Archetype

DEFAULT_FILE = "archetypes.toml"
SOURCE = "elemental"
WORD = re.compile(r"\w+")


class ArchetypeConfigError(ValueError):
    """The archetypes file is missing, unreadable or malformed."""


def normalise(text: str) -> str:
    """Compatibility-folded and case-folded, so "ＣＬＡＲＩＴＹ" and "clarity" are one word."""
    return unicodedata.normalize("NFKC", text).casefold()


def words(text: str) -> set[str]:
    return set(WORD.findall(normalise(text)))


Stem = Annotated[str, Field(pattern=r"^\w{2,}$"), AfterValidator(normalise)]
Weight = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Cue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    weight: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    stems: tuple[Stem, ...] = Field(min_length=1)


class ArchetypeTable(BaseModel):
    """The parsed ``archetypes.toml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    elements: dict[str, dict[str, Weight]]
    cues: dict[str, Cue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _every_element_once(self) -> ArchetypeTable:
        if set(self.elements) != set(ELEMENTS):
            raise ValueError(f"[elements.*] must have exactly the tables {', '.join(ELEMENTS)}; got {', '.join(sorted(self.elements))}")
        empty = [element for element, weights in self.elements.items() if not any(weights.values())]
        if empty:
            raise ValueError(f"[elements.{empty[0]}] needs at least one archetype with a weight above 0")
        return self


class ElementalArchetypes:
    """An archetype provider: ``archetypes(turn)`` from the element and cue words."""

    def __init__(self, table: ArchetypeTable):
        self._table = table

    @classmethod
    def from_context(cls, context: PluginContext) -> ElementalArchetypes:
        path = data_file(context.config, "archetypes", DEFAULT_FILE, "elemental", ArchetypeConfigError, context.config_dir)
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: Path) -> ElementalArchetypes:
        data = read_toml(path, "archetypes", ArchetypeConfigError)
        try:
            return cls(ArchetypeTable.model_validate(data))
        except ValidationError as exc:
            raise ArchetypeConfigError(f"archetypes {path}: {exc}") from None

    def archetypes(self, turn) -> list[Archetype]:
        return self.weigh(turn.text, turn.element)

    def weigh(self, text: str, element: str | None) -> list[Archetype]:
        """Base weights of the element plus cue weights, scaled to sum to 1, strongest first."""
        scores = dict(self._table.elements.get(element or "", {}))
        found = words(text)
        for name, cue in self._table.cues.items():
            hits = sum(1 for word in found if word.startswith(cue.stems))
            if hits:
                scores[name] = scores.get(name, 0.0) + cue.weight * hits
        total = sum(scores.values())
        ranked = sorted(((name, weight) for name, weight in scores.items() if weight > 0), key=lambda item: (-item[1], item[0]))
        return [Archetype(name, round(weight / total, 4), SOURCE) for name, weight in ranked]


@hookimpl
def register_archetype_providers(register: Register) -> None:
    register("elemental", ElementalArchetypes.from_context)

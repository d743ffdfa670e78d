"""Crisis resources per locale, from ``config/crisis_resources.toml``.

No resource text is written in code: helplines change, and the people who
check them should not have to read Python to do it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from spiralogic.datafiles import read_toml

DEFAULT_LOCALE = "default"
REQUIRED = ("grounding", "grounding_cues", "heading", "lines")


class ResourcesError(ValueError):
    """The resources file is missing, unreadable or incomplete."""


@dataclass(frozen=True)
class LocaleResources:
    """What crisis mode adds to a reply in one locale."""

    grounding: str
    grounding_cues: tuple[str, ...]
    heading: str
    lines: tuple[str, ...]
    by_category: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def offers_grounding(self, text: str) -> bool:
        folded = text.casefold()
        return any(cue.casefold() in folded for cue in self.grounding_cues)

    def block(self, category: str | None) -> str:
        """The heading and every line for ``category``, one per line."""
        lines = self.lines + self.by_category.get(category or "", ())
        return "\n".join((self.heading, *lines))


def load_resources(path: Path) -> dict[str, LocaleResources]:
    """Every locale of the file, each completed from ``[default]``."""
    data = read_toml(path, "crisis resources", ResourcesError)
    base = data.get(DEFAULT_LOCALE)
    if not isinstance(base, dict) or any(key not in base for key in REQUIRED):
        raise ResourcesError(f"{path}: [{DEFAULT_LOCALE}] must set {', '.join(REQUIRED)}")
    if not all(isinstance(table, dict) for table in data.values()):
        raise ResourcesError(f"{path}: expected one table per locale")
    return {name: _locale({**base, **table}, f"{path}: [{name}]") for name, table in data.items()}


def _locale(raw: Mapping[str, Any], where: str) -> LocaleResources:
    by_category = raw.get("by_category", {})
    if not all(_strings(v) for v in (raw["grounding_cues"], raw["lines"], *by_category.values())):
        raise ResourcesError(f"{where}: grounding_cues, lines and by_category entries must be lists of text")
    if not all(isinstance(raw[key], str) and raw[key].strip() for key in ("grounding", "heading")):
        raise ResourcesError(f"{where}: grounding and heading must be text")
    return LocaleResources(
        grounding=raw["grounding"],
        grounding_cues=tuple(raw["grounding_cues"]),
        heading=raw["heading"],
        lines=tuple(raw["lines"]),
        by_category={name: tuple(lines) for name, lines in by_category.items()},
    )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(s, str) and s.strip() for s in value)


def resources_for(locales: Mapping[str, LocaleResources], locale: str) -> LocaleResources:
    return locales.get(locale) or locales[DEFAULT_LOCALE]

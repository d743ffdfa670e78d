"""The shadow-work shaper: at most one reflective challenge per reply, with consent.

The challenge goes in ``draft.challenge`` as ``{"prompt", "intensity"}``. Its
words come from ``config/shadow_work.toml`` (one list per intensity and
element), picked with ``random.Random(turn id)``: reproducible per turn, varied
across turns, and editable without touching code.

How intense a challenge may be is a matter of consent (playbook: "escalate
shadow work only with neutral+ feedback"); see :func:`consented_intensity`.
The service's ``SHADOW_CHALLENGE_INTENSITY`` is the ceiling over every user.
No challenge at all in crisis, when any guardrail disallows one, or in
fallback mode (concise text only); in those cases a challenge another plugin
added is removed too. Lite mode keeps the shaper.

Challenges are offered on the turns of the orchestrators named in the
``orchestrators`` setting (the spiralogic mind by default: the baseline voice
has no shadow work). A challenge some other plugin already put on the draft
stands, so a reply never carries two.

Settings, ``[default.plugins.shadow_work]``: ``templates`` (file name relative
to the config directory, default ``shadow_work.toml``) and ``orchestrators``
(default ``["spiralogic"]``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

from spiralogic import hookimpl
from spiralogic.datafiles import data_file, read_toml
from spiralogic.history import UserHistory
from spiralogic.turn import ELEMENTS, Draft, Turn

INTENSITIES = ("low", "med", "high")
NEUTRAL = "neutral"
DEFAULT_TEMPLATES = "shadow_work.toml"
DEFAULT_ORCHESTRATORS = ("spiralogic",)


class ShadowWorkConfigError(ValueError):
    """The challenge templates or the plugin's settings are unusable."""


# -- Consent -----------------------------------------------------------------


def consented_intensity(history: UserHistory, ceiling: str) -> str:
    """The most intense challenge this user may be offered now, never above ``ceiling``.

    The user's level is the intensity of their last challenge, moved by the
    feedback on it: neutral or better steps up one, negative steps down one
    (never below low), none leaves it where it is. A user who said they did not
    take the challenge up stays put even if they rated the turn well. A user
    never challenged, or whose history could not be read, starts at low.
    """
    if not history.known or history.last_challenge not in INTENSITIES:
        return _lower(INTENSITIES[0], ceiling)
    sentiment = history.last_challenge_sentiment
    if sentiment is None:
        step = 0
    elif sentiment < 0:
        step = -1
    else:
        step = 0 if history.last_challenge_accepted is False else 1
    index = INTENSITIES.index(history.last_challenge) + step
    return _lower(INTENSITIES[max(0, min(index, len(INTENSITIES) - 1))], ceiling)


def _lower(a: str, b: str) -> str:
    return min(a, b, key=INTENSITIES.index)


def suppressed(turn: Turn) -> bool:
    """No challenge on this turn at all."""
    return turn.assessment.crisis or not turn.assessment.allow_challenge or turn.mode == "fallback"


# -- Templates ---------------------------------------------------------------


@dataclass(frozen=True)
class Challenges:
    """The challenge prompts: intensity -> element (or neutral) -> prompts."""

    prompts: Mapping[str, Mapping[str, tuple[str, ...]]]

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Challenges:
        prompts = {}
        for intensity in INTENSITIES:
            table = data.get(intensity)
            if not isinstance(table, dict):
                raise ShadowWorkConfigError(f"missing table [{intensity}]")
            prompts[intensity] = {element: _prompts(table.get(element), f"{intensity}.{element}") for element in (NEUTRAL, *ELEMENTS)}
        return cls(prompts)

    def pick(self, intensity: str, element: str | None, seed: str) -> str:
        by_element = self.prompts[intensity]
        return random.Random(seed).choice(by_element.get(element or NEUTRAL, by_element[NEUTRAL]))


def _prompts(raw: Any, where: str) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw or not all(isinstance(text, str) and text.strip() for text in raw):
        raise ShadowWorkConfigError(f"{where}: expected a non-empty list of questions")
    return tuple(text.strip() for text in raw)


@lru_cache(maxsize=8)
def load_challenges(path: Path) -> Challenges:
    """Read once per process; restart to pick up edits."""
    data = read_toml(path, "challenge templates", ShadowWorkConfigError)
    try:
        return Challenges.parse(data)
    except ShadowWorkConfigError as exc:
        raise ShadowWorkConfigError(f"challenge templates {path}: {exc}") from exc


def templates_path(config: Mapping[str, Any]) -> Path:
    return data_file(config, "templates", DEFAULT_TEMPLATES, "shadow_work", ShadowWorkConfigError)


def offering_orchestrators(config: Mapping[str, Any]) -> tuple[str, ...]:
    names = config.get("orchestrators", DEFAULT_ORCHESTRATORS)
    if isinstance(names, str) or not all(isinstance(name, str) for name in names):
        raise ShadowWorkConfigError(f"plugins.shadow_work.orchestrators must be a list of ids, not {names!r}")
    return tuple(names)


# -- The hook ----------------------------------------------------------------


@hookimpl
def shape_response(turn: Turn, draft: Draft, config: Mapping[str, Any]) -> None:
    if suppressed(turn):
        draft.challenge = None
        return
    if draft.challenge is not None or turn.orchestrator not in offering_orchestrators(config):
        return
    intensity = consented_intensity(turn.history, turn.challenge_intensity)
    prompt = load_challenges(templates_path(config)).pick(intensity, turn.element, turn.turn_id)
    draft.challenge = {"prompt": prompt, "intensity": intensity}

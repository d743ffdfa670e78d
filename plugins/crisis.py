"""Crisis mode: find crisis signals in a message, then keep the reply safe.

``assess_input`` runs before any text is generated, in every mode, streamed
or not. When a message shows a sign of suicidal thinking, self-harm, abuse or
acute distress, the turn becomes a crisis: no shadow-work challenge, and the
generator is asked for grounding and a warm tone. ``shape_response`` runs
after every other guardrail (``trylast``) and makes sure of it: it drops any
challenge, adds a grounding sentence if the reply has none, and appends the
crisis resources of the configured locale (``config/crisis_resources.toml``).

Detection combines two detectors (see docs/safety.md for how well each does):

- the lexicon (``config/crisis_lexicon.toml``): signal phrases per category,
  minus idioms such as "this traffic is killing me"; always on;
- the classifier (``config/crisis_prototypes.toml``): sentence embeddings
  compared with labelled examples, for indirect phrasing no list foresees
  ("everyone would be better off without me"). It needs the optional extra
  ``crisis-model``; without it the lexicon works alone, and that is logged once.

A message is a crisis if the lexicon finds a signal outside every idiom, or
the classifier's score reaches ``threshold``.

The classifier costs milliseconds of CPU per message, not microseconds, so
in the service it runs off the event loop within a wait limit and a share of
the CPU (``crisis_runner``). When it cannot answer within them (a burst on a
saturated worker), the turn goes on with the lexicon's verdict and the tag
``crisis_classifier: skipped``: no guardrail may cost a turn its budget.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from spiralogic import hookimpl
from spiralogic.settings import CONFIG_DIR
from spiralogic.state import app_state
from spiralogic.turn import Assessment, Draft, Turn
from spiralogic_plugins.crisis_lexicon import Lexicon
from spiralogic_plugins.crisis_resources import LocaleResources, load_resources, resources_for
from spiralogic_plugins.crisis_runner import BoundedRunner, ClassifierSkipped

if TYPE_CHECKING:
    from spiralogic_plugins.crisis_classifier import PrototypeClassifier, Verdict

PLUGIN = "crisis"
INSTRUCTIONS = ("offer grounding", "warm tone")
log = logging.getLogger(__name__)


class CrisisConfigError(ValueError):
    """``[default.plugins.crisis]`` holds a value the guardrail cannot use."""


@dataclass(frozen=True)
class Options:
    """The plugin's settings, ``[default.plugins.crisis]``, checked."""

    locale: str = "default"
    classifier: bool = True
    threshold: float = 0.01
    classifier_timeout_ms: int = 100
    classifier_max_cpu_share: float = 0.5
    lexicon: str = "crisis_lexicon.toml"
    prototypes: str = "crisis_prototypes.toml"
    resources: str = "crisis_resources.toml"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Options:
        options = cls(**{key: config[key] for key in cls.__dataclass_fields__ if key in config})
        for key, (valid, expected) in CHECKS.items():
            if not valid(getattr(options, key)):
                raise CrisisConfigError(f"plugins.crisis.{key} must be {expected}")
        return options

    def path(self, name: str) -> Path:
        """A file named in the settings, relative to the config directory."""
        return Path(CONFIG_DIR) / name


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _name(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


#: each setting: is the value usable, and what it must be
CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "locale": (_name, "a non-empty string"),
    "classifier": (lambda v: isinstance(v, bool), "true or false"),
    "threshold": (lambda v: _number(v) and -1 <= v <= 1, "a number between -1 and 1"),
    "classifier_timeout_ms": (lambda v: _number(v) and v > 0, "a number > 0"),
    "classifier_max_cpu_share": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "lexicon": (_name, "a file name"),
    "prototypes": (_name, "a file name"),
    "resources": (_name, "a file name"),
}


#: runs ``classify(text)`` and returns its verdict (BoundedRunner may raise ClassifierSkipped)
Runner = Callable[[Callable[[str], "Verdict"], str], "Verdict"]


def run_now(classify: Callable[[str], Verdict], text: str) -> Verdict:
    return classify(text)


@dataclass(frozen=True)
class Detection:
    category: str
    #: which detector found it: "lexicon" or "classifier"
    source: str
    score: float | None = None


class CrisisDetector:
    """The lexicon, then (when it is installed and the lexicon found nothing) the classifier."""

    def __init__(self, lexicon: Lexicon, classifier: PrototypeClassifier | None = None, threshold: float = Options.threshold):
        self.lexicon = lexicon
        self.classifier = classifier
        self.threshold = threshold

    def detect(self, text: str, run: Runner = run_now) -> Detection | None:
        """The crisis found in ``text``, or None; ``run`` runs the classifier (at once by default)."""
        found = self.lexicon.match(text)
        if found is not None:
            return Detection(found.category, "lexicon")
        if self.classifier is None:
            return None
        verdict = run(self.classifier.verdict, text)
        return Detection(verdict.category, "classifier", verdict.score) if verdict.score >= self.threshold else None


@functools.cache
def detector(options: Options) -> CrisisDetector:
    """Built once per process and settings: the classifier takes a second to load."""
    lexicon = Lexicon.from_file(options.path(options.lexicon))
    classifier = load_classifier(options.path(options.prototypes)) if options.classifier else None
    return CrisisDetector(lexicon, classifier, options.threshold)


@functools.cache
def load_classifier(prototypes: Path) -> PrototypeClassifier | None:
    """The embedding classifier, or None (logged once) when the ``crisis-model`` extra is missing."""
    try:
        from spiralogic_plugins.crisis_classifier import PrototypeClassifier, Prototypes
        from spiralogic_plugins.crisis_encoder import SentenceEncoder, bundled_model_dir

        model_dir = bundled_model_dir()
    except ImportError as exc:
        log.warning("crisis classifier unavailable (%s); detecting with the lexicon alone", exc)
        return None
    return PrototypeClassifier(SentenceEncoder(model_dir), Prototypes.from_file(prototypes))


@functools.cache
def runner(timeout_ms: float, max_cpu_share: float) -> BoundedRunner:
    """One per process and limits: its CPU share is the process's."""
    return BoundedRunner(timeout_ms / 1000, max_cpu_share)


@functools.cache
def locale_resources(options: Options) -> LocaleResources:
    return resources_for(load_resources(options.path(options.resources)), options.locale)


@hookimpl
def startup(app) -> None:
    """Load every file now, so a broken one stops the service at start rather than on a crisis turn."""
    options = Options.from_config(app_state(app).plugin_config(PLUGIN))
    detector(options)
    locale_resources(options)


@hookimpl
def assess_input(turn: Turn, config: Mapping[str, Any]) -> Assessment | None:
    options = Options.from_config(config)
    try:
        found = detector(options).detect(turn.text, runner(options.classifier_timeout_ms, options.classifier_max_cpu_share))
    except ClassifierSkipped:
        return Assessment(tags={"crisis_classifier": "skipped"})
    if found is None:
        return None
    return Assessment(crisis=True, allow_challenge=False, instructions=list(INSTRUCTIONS), tags={"crisis": found.category})


@hookimpl(trylast=True)
def shape_response(turn: Turn, draft: Draft, config: Mapping[str, Any]) -> None:
    if not turn.assessment.crisis:
        return
    draft.challenge = None
    resources = locale_resources(Options.from_config(config))
    parts = [draft.text.strip()]
    if not resources.offers_grounding(draft.text):
        parts.append(resources.grounding)
    parts.append(resources.block(turn.assessment.tags.get("crisis")))
    draft.text = "\n\n".join(part for part in parts if part)

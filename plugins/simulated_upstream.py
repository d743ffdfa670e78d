"""A simulated upstream LLM provider (provider id ``simulated``) for load and fault tests.

Latency budgets, lite/fallback degradation and the alerts built on them only
show their worth when a provider is slow, flaky or stuck, and a real provider
cannot be made so on demand (nor paid for under load). This test double
imitates one without any network: each call draws a total latency from a
log-normal distribution fitted to the configured p50 and p95, streams its
chunks over that time, and may instead fail, hang or be cut mid-stream at the
configured rates.

It is a test double by design: its words come from a few fixed sentences in
this module, filled with the prompt's element and first words. It shares
nothing with the template voice, so load results never depend on templates.

All waiting is ``gevent.sleep``: the service runs on gevent workers and
enforces budgets by killing greenlets, so even a 30 s hang must end the moment
a ``gevent.Timeout`` or ``Greenlet.kill`` reaches it.

It is selected only by ``generation.provider = "simulated"``; its settings live
in ``[default.plugins.simulated]``.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, Iterator, Literal, Mapping

import gevent

from spiralogic import hookimpl
from spiralogic.components import PluginContext
from spiralogic.hookspecs import Register
from spiralogic.turn import Prompt

Fate = Literal["ok", "error", "hang", "cut"]

DEFAULTS: dict[str, Any] = {
    "latency_p50_ms": 200,
    "latency_p95_ms": 400,
    "first_chunk_ms": None,
    "chunks": 8,
    "error_rate": 0.0,
    "hang_rate": 0.0,
    "cut_rate": 0.0,
    "hang_ms": 30000,
    "seed": None,
}
RATES = ("error_rate", "hang_rate", "cut_rate")
# Without first_chunk_ms, time to first chunk is this share of the total: hosted
# chat models spend roughly a third of a short reply's time before the first token.
FIRST_CHUNK_FRACTION = 0.3
Z95 = NormalDist().inv_cdf(0.95)
# One generator for unseeded draws: a new Random() per call would read the OS entropy pool each time.
_UNSEEDED = random.Random()
TOPIC_WORDS = 6
SENTENCES = (
    "This is a simulated reply about {topic}.",
    "The {element} voice would answer here if a model were called.",
    "Nothing in it was generated; it only keeps time like a real provider.",
)


class SimulatedUpstreamFailure(RuntimeError):
    """Base of every failure the simulated upstream injects on purpose."""


class SimulatedUpstreamError(SimulatedUpstreamFailure):
    """The upstream answered with an error, before or during the stream."""


class SimulatedStreamCut(SimulatedUpstreamFailure):
    """The stream stopped after some chunks, without its end."""


class SimulatedConfigError(ValueError):
    """A ``[default.plugins.simulated]`` value the provider cannot run with."""


@hookimpl
def register_llm_providers(register: Register) -> None:
    register("simulated", SimulatedUpstream.from_context)


# -- Config ------------------------------------------------------------------


@dataclass(frozen=True)
class SimulatedConfig:
    """Validated settings; times in milliseconds, as written in settings.toml."""

    latency_p50_ms: float
    latency_p95_ms: float
    first_chunk_ms: float | None
    chunks: int
    error_rate: float
    hang_rate: float
    cut_rate: float
    hang_ms: float
    seed: int | None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], prefix: str) -> SimulatedConfig:
        # Keys set through environment variables arrive upper-case.
        given = {str(key).lower(): value for key, value in raw.items()}
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            raise SimulatedConfigError(f"unknown setting {prefix}.{unknown[0]}; known: {', '.join(DEFAULTS)}")
        values = {**DEFAULTS, **given}
        for key in DEFAULTS:
            _check_value(key, values[key], f"{prefix}.{key}")
        if values["latency_p95_ms"] < values["latency_p50_ms"]:
            raise SimulatedConfigError(
                f"{prefix}.latency_p95_ms ({values['latency_p95_ms']}) must not be below "
                f"{prefix}.latency_p50_ms ({values['latency_p50_ms']})"
            )
        if sum(values[key] for key in RATES) > 1:
            raise SimulatedConfigError(f"{prefix}.error_rate + hang_rate + cut_rate must not exceed 1")
        return cls(**values)


def _check_value(key: str, value: Any, name: str) -> None:
    """Raise SimulatedConfigError naming ``name`` unless ``value`` suits ``key``."""
    if value is None and DEFAULTS[key] is None:
        return
    integral = key in ("chunks", "seed")
    # bool is an int subclass: ``chunks = true`` must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
        raise SimulatedConfigError(f"{name} must be {'an integer' if integral else 'a number'}, not {value!r}")
    if key == "seed":
        return
    if not math.isfinite(value) or value < 0:
        raise SimulatedConfigError(f"{name} must be a finite number >= 0, not {value!r}")
    if key in RATES and value > 1:
        raise SimulatedConfigError(f"{name} is a probability and must be within [0, 1], not {value!r}")
    if key in ("latency_p50_ms", "chunks") and value == 0:
        raise SimulatedConfigError(f"{name} must be above 0")


# -- Plans -------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """How one call will unfold, drawn before it starts.

    ``first_chunk_s`` and ``gaps_s`` (one per later chunk) are the waits of the
    full stream; ``delivered`` is how many chunks are yielded before ``fate``
    strikes (all of them for ok and hang); ``hang_s`` is spent before anything.
    """

    fate: Fate
    first_chunk_s: float
    gaps_s: tuple[float, ...]
    delivered: int
    hang_s: float = 0.0

    @property
    def delays_s(self) -> tuple[float, ...]:
        """The wait before each chunk of the full stream."""
        return (self.first_chunk_s, *self.gaps_s)

    @property
    def total_s(self) -> float:
        """Time from the call to the last chunk of the full stream, hang excluded."""
        return self.first_chunk_s + sum(self.gaps_s)


class SimulatedUpstream:
    """An LLM provider that keeps a drawn latency plan and yields placeholder text."""

    def __init__(self, config: SimulatedConfig):
        self.config = config
        self._mu = math.log(config.latency_p50_ms / 1000)
        # Log-normal: ln(latency) ~ N(mu, sigma), with exp(mu) the p50 and exp(mu + Z95 sigma) the p95.
        self._sigma = math.log(config.latency_p95_ms / config.latency_p50_ms) / Z95

    @classmethod
    def from_context(cls, context: PluginContext) -> SimulatedUpstream:
        return cls(SimulatedConfig.parse(context.config, f"plugins.{context.id}"))

    def plan(self, rng: random.Random) -> Plan:
        """Draw one call's timing and fate; pure, so tests can sample it without sleeping."""
        total = rng.lognormvariate(self._mu, self._sigma)
        fate = self._draw_fate(rng)
        first = self._first_chunk_s(total)
        gaps = _split_time(max(0.0, total - first), self.config.chunks - 1, rng)
        hang = self.config.hang_ms / 1000 if fate == "hang" else 0.0
        return Plan(fate, first, gaps, self._delivered(fate, rng), hang)

    def generate(self, prompt: Prompt) -> Iterator[str]:
        """Yield the reply in ``chunks`` pieces on the drawn schedule, or fail as drawn."""
        plan = self.plan(self._rng(prompt))
        texts = reply_chunks(prompt, self.config.chunks)
        gevent.sleep(plan.hang_s)
        # Each chunk is due at its time since the call, as a real stream's bytes arrive
        # whether or not the reader is awake: a reader that wakes late finds it waiting.
        dues = list(itertools.accumulate(plan.delays_s, initial=time.monotonic()))[1:]
        for index in range(plan.delivered):
            _sleep_until(dues[index])
            yield texts[index]
        if plan.fate in ("error", "cut"):
            # The failure arrives when the next chunk would have (at once if none was left).
            if plan.delivered < len(dues):
                _sleep_until(dues[plan.delivered])
            failure = SimulatedUpstreamError if plan.fate == "error" else SimulatedStreamCut
            raise failure(f"simulated upstream {plan.fate} after {plan.delivered} of {len(dues)} chunks")

    def _rng(self, prompt: Prompt) -> random.Random:
        # Seeded draws follow the turn, not call order, so they stay reproducible under concurrency.
        if self.config.seed is None:
            return _UNSEEDED
        return random.Random(f"{self.config.seed}:{prompt.seed}")

    def _draw_fate(self, rng: random.Random) -> Fate:
        # One draw over disjoint bands, so each rate is exactly its fate's probability.
        u = rng.random()
        config = self.config
        for fate, rate in (("error", config.error_rate), ("hang", config.hang_rate), ("cut", config.cut_rate)):
            if u < rate:
                return fate
            u -= rate
        return "ok"

    def _first_chunk_s(self, total: float) -> float:
        if self.config.first_chunk_ms is not None:
            return self.config.first_chunk_ms / 1000
        return total if self.config.chunks == 1 else total * FIRST_CHUNK_FRACTION

    def _delivered(self, fate: Fate, rng: random.Random) -> int:
        chunks = self.config.chunks
        if fate == "error":
            return rng.randrange(chunks)  # 0: the request itself failed
        if fate == "cut":
            return rng.randint(1, max(1, chunks - 1))
        return chunks


def _sleep_until(due: float) -> None:
    gevent.sleep(max(0.0, due - time.monotonic()))


def _split_time(seconds: float, parts: int, rng: random.Random) -> tuple[float, ...]:
    """``seconds`` cut into ``parts`` uneven gaps that add up exactly, like a token stream's."""
    weights = [rng.uniform(0.5, 1.5) for _ in range(parts)]
    scale = seconds / sum(weights) if weights else 0.0
    return tuple(w * scale for w in weights)


# -- Text --------------------------------------------------------------------


def reply_chunks(prompt: Prompt, chunks: int) -> list[str]:
    """The placeholder reply in ``chunks`` non-empty pieces; every piece but the last ends with a space."""
    topic = " ".join(prompt.text.split()[:TOPIC_WORDS]).strip(" .,;:!?") or "your question"
    # The element (validated upstream) goes in first, so braces in user text are never expanded.
    sentences = [s.replace("{element}", prompt.element or "quiet").replace("{topic}", topic) for s in SENTENCES]
    words = " ".join(sentences).split()
    while len(words) < chunks:  # many small chunks: repeat the reply rather than send empty ones
        words += words
    bounds = [len(words) * i // chunks for i in range(chunks + 1)]
    pieces = [" ".join(words[bounds[i] : bounds[i + 1]]) for i in range(chunks)]
    return [piece + " " for piece in pieces[:-1]] + pieces[-1:]

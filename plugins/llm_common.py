"""What the hosted LLM providers share: config, system prompt, deadline, retries, breaker.

The openai, anthropic and openai_compatible providers differ only in how they
open a stream with their vendor's official client and read text and token
counts out of it. Everything that decides whether to call, which model to
call and for how long lives here, once:

- the system prompt, assembled from ``config/llm_prompts.toml``: the oracle
  voice, the mode's length, the element, the fused archetypes, the worldview
  gate and the guardrails' instructions;
- the turn's deadline (``Prompt.deadline``): every request's connect, read,
  write and pool timeouts are the time left, and once the stream is open a
  watchdog shuts its socket when the deadline passes. A stalled stream thus
  ends on time on its own, even where no greenlet timeout can interrupt a
  blocking read (a plain thread, a CLI);
- retries (tenacity): transient statuses and connection failures are tried
  again after a short backoff or the server's ``Retry-After``, only while the
  deadline allows it; a ``Retry-After`` beyond the deadline fails at once. The
  clients' own retries are off (``max_retries=0``), so the two never stack;
- a circuit breaker per provider and worker process (pybreaker): after
  repeated failures calls fail fast with ProviderUnavailable for a cool-down,
  then the next call is a probe that closes or reopens it.

Every failure leaves as a ProviderError, with the API key redacted from its
message: the core logs and records it, and answers the fallback reply.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import tomllib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from string import Template
from typing import Any, Callable, Iterator, Mapping

import httpx2
import pybreaker
import tenacity

from spiralogic.components import PluginContext
from spiralogic.turn import ELEMENTS, MODES, Prompt

log = logging.getLogger(__name__)

#: transient answers worth another try (529: Anthropic's "overloaded")
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
#: answers about this one request, not the provider's health: they never trip the breaker
REQUEST_ERRORS = frozenset({400, 413, 422})
# A retry left with less time than this cannot produce a reply; failing now is better.
MIN_ATTEMPT_S = 0.05
# Callers outside the pipeline may give no deadline; they still get a bounded call.
NO_DEADLINE_S = 30.0
# A failing call gives up this long before the deadline, so the core receives the provider's
# own error (and records it) rather than cancelling the turn without knowing why.
DEADLINE_MARGIN_S = 0.05
DETAIL_MAX_CHARS = 300
NEUTRAL = "neutral"
DEFAULT_WORLDVIEW = "default"


# -- Errors ------------------------------------------------------------------


class ProviderError(RuntimeError):
    """A generation failed; the message names the provider and never holds the API key."""


class ProviderUnavailable(ProviderError):
    """The provider's circuit is open: it failed repeatedly and is skipped for a cool-down."""


class ProviderTimeout(ProviderError):
    """No complete reply within the time the turn had left."""


class ProviderHTTPError(ProviderError):
    """The provider answered with an error status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ProviderConnectionError(ProviderError):
    """The request got no answer: refused, reset or unreachable."""


class ProviderStreamError(ProviderError):
    """The stream broke off, ended without its end marker, or was not understood."""


class ProviderConfigError(ValueError):
    """A ``[default.plugins.<id>]`` value, or the prompts file, the provider cannot run with."""


# -- Config ------------------------------------------------------------------

#: keys every provider table may set, with their defaults; None means "required" for
#: model and fast_model, and "the client's own default" for base_url and api_key
DEFAULTS: dict[str, Any] = {
    "model": None,
    "fast_model": None,
    "max_tokens": 400,
    "base_url": None,
    "api_key": None,
    "prompts": "llm_prompts.toml",
    "connect_timeout_ms": 500,
    "fast_below_ms": 420,
    "long_input_chars": 800,
    "max_attempts": 3,
    "breaker_failures": 5,
    "breaker_cooldown_s": 30,
}
TEXT_KEYS = ("model", "fast_model", "base_url", "api_key", "prompts")
OPTIONAL_TEXT_KEYS = ("base_url", "api_key")
INTEGER_KEYS = ("max_tokens", "long_input_chars", "max_attempts", "breaker_failures")


@dataclass(frozen=True)
class ProviderConfig:
    """One provider's validated table; times as written in settings.toml."""

    model: str
    fast_model: str
    max_tokens: int
    base_url: str | None
    api_key: str | None = field(repr=False)
    prompts: str
    connect_timeout_ms: float
    fast_below_ms: float
    long_input_chars: int
    max_attempts: int
    breaker_failures: int
    breaker_cooldown_s: float

    @classmethod
    def parse(cls, raw: Mapping[str, Any], prefix: str, key_variable: str | None) -> ProviderConfig:
        """Check the table; ``key_variable`` names the env var of a required key (None: optional)."""
        # Keys set through environment variables arrive upper-case.
        given = {str(key).lower(): value for key, value in raw.items()}
        unknown = sorted(set(given) - set(DEFAULTS))
        if unknown:
            raise ProviderConfigError(f"unknown setting {prefix}.{unknown[0]}; known: {', '.join(DEFAULTS)}")
        values = {**DEFAULTS, **given}
        for key in OPTIONAL_TEXT_KEYS:
            values[key] = values[key] or None  # an empty string (a blank secrets entry) means unset
        for key in DEFAULTS:
            _check_value(key, values[key], f"{prefix}.{key}")
        if key_variable and not values["api_key"]:
            raise ProviderConfigError(
                f"{prefix}.api_key is not set: set {key_variable} in the environment (or api_key in "
                f"[<env>.{prefix}] of config/.secrets.toml)"
            )
        return cls(**values)

    def model_for(self, prompt: Prompt, left_s: float) -> str:
        """The fast model under pressure (lite or fallback, a long message, little time left)."""
        pressed = prompt.mode != "full" or len(prompt.text) >= self.long_input_chars or left_s * 1000 < self.fast_below_ms
        return self.fast_model if pressed else self.model


def _check_value(key: str, value: Any, name: str) -> None:
    if key in TEXT_KEYS:
        if value is None and key in OPTIONAL_TEXT_KEYS:
            return
        if not isinstance(value, str) or not value.strip():
            raise ProviderConfigError(f"{name} must be a non-empty string")
        return
    integral = key in INTEGER_KEYS
    # bool is an int subclass: ``max_tokens = true`` must not pass as 1.
    if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)) or value <= 0:
        raise ProviderConfigError(f"{name} must be {'an integer' if integral else 'a number'} above 0, not {value!r}")


# -- System prompt -----------------------------------------------------------


@dataclass(frozen=True)
class SystemPrompts:
    """The paragraphs a system prompt is assembled from (see config/llm_prompts.toml)."""

    voice: str
    modes: Mapping[str, str]
    elements: Mapping[str, str]
    archetypes: Template
    worldviews: Mapping[str, str]
    instructions: Mapping[str, str]

    @classmethod
    def from_context(cls, context: PluginContext, config: ProviderConfig) -> SystemPrompts:
        return cls.from_file(Path(context.config_dir) / config.prompts)

    @classmethod
    def from_file(cls, path: Path) -> SystemPrompts:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
            return cls(
                voice=_texts(data, "voice", ("text",))["text"],
                modes=_texts(data, "modes", MODES),
                elements=_texts(data, "elements", (NEUTRAL, *ELEMENTS)),
                archetypes=_archetypes_template(_texts(data, "archetypes", ("text",))["text"]),
                worldviews=_texts(data, "worldviews", (DEFAULT_WORLDVIEW,)),
                instructions={key.strip().casefold(): value for key, value in _texts(data, "instructions").items()},
            )
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, ProviderConfigError) as exc:
            raise ProviderConfigError(f"system prompts {path}: {exc}") from None

    def build(self, prompt: Prompt) -> str:
        parts = [
            self.voice,
            self.modes.get(prompt.mode, self.modes["full"]),
            self.elements.get(prompt.element or NEUTRAL, self.elements[NEUTRAL]),
        ]
        if prompt.archetypes:
            ranked = sorted(prompt.archetypes, key=lambda a: -a.weight)
            parts.append(self.archetypes.substitute(archetypes=", ".join(f"{a.name} ({a.weight:.2f})" for a in ranked)))
        parts.append(self.worldviews.get(prompt.worldview or DEFAULT_WORLDVIEW, self.worldviews[DEFAULT_WORLDVIEW]))
        # A guardrail instruction the file does not know is passed on as written.
        parts += [self.instructions.get(i.strip().casefold(), i) for i in prompt.instructions if i.strip()]
        return "\n\n".join(parts)


def _texts(data: Mapping[str, Any], table: str, required: tuple[str, ...] = ()) -> dict[str, str]:
    """``[table]`` as a mapping of non-empty strings (whitespace folded) holding ``required``."""
    values = data.get(table)
    if not isinstance(values, dict) or not all(isinstance(v, str) and v.strip() for v in values.values()):
        raise ProviderConfigError(f"[{table}] must be a table of non-empty strings")
    missing = [key for key in required if key not in values]
    if missing:
        raise ProviderConfigError(f"[{table}] needs {missing[0]!r}")
    return {key: " ".join(value.split()) for key, value in values.items()}


def _archetypes_template(text: str) -> Template:
    template = Template(text)
    if not template.is_valid() or template.get_identifiers() != ["archetypes"]:
        raise ProviderConfigError("[archetypes] text must use $archetypes and no other placeholder (write $$ for a dollar sign)")
    return template


# -- Deadline ----------------------------------------------------------------


def request_timeout(deadline: float, connect_cap_s: float) -> httpx2.Timeout:
    """Timeouts for one request: the time left, the connect phase capped so a retry still fits."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise ProviderTimeout("no time left for a request")
    return httpx2.Timeout(connect=min(left, connect_cap_s), read=left, write=left, pool=left)


class DeadlineWatch:
    """Shuts an open response's socket when the deadline passes.

    A request's read timeout is fixed when it starts, so it cannot follow the
    deadline chunk by chunk. Shutting the socket wakes a read blocked on it,
    in a plain thread as in a gevent greenlet, and the stream fails at once.
    """

    def __init__(self, response: httpx2.Response, deadline: float):
        self.fired = False
        self._done = False
        self._lock = threading.Lock()
        network = response.extensions.get("network_stream")
        sock = network.get_extra_info("socket") if network is not None else None
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire, (sock,)) if sock else None
        if self._timer is not None:
            self._timer.daemon = True
            self._timer.start()

    def _fire(self, sock: socket.socket) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed by the peer
                pass

    def stop(self) -> None:
        """Disarm; after this the socket is never touched (it may go back to the pool)."""
        with self._lock:
            self._done = True
        if self._timer is not None:
            self._timer.cancel()


# -- Retries -----------------------------------------------------------------


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def retry_after_s(exc: BaseException) -> float | None:
    """The server's ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date), if any."""
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    if "retry-after-ms" in headers:
        return _seconds(headers["retry-after-ms"], scale=1000)
    if "retry-after" in headers:
        return _seconds(headers["retry-after"])
    return None


def _seconds(value: str, scale: float = 1) -> float | None:
    try:
        return max(0.0, float(value) / scale)
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):  # unparseable, or a date without a zone
        return None


def retry_policy(deadline: float, max_attempts: int, transient: Callable[[BaseException], bool]) -> tenacity.Retrying:
    """Retry transient failures after the server's Retry-After or a short backoff, never past the deadline."""
    backoff = tenacity.wait_exponential_jitter(multiplier=0.05, max=0.5, jitter=0.05)

    def wait(state: tenacity.RetryCallState) -> float:
        after = retry_after_s(state.outcome.exception())
        return backoff(state) if after is None else after

    def out_of_time(state: tenacity.RetryCallState) -> bool:
        # Runs after wait: a Retry-After longer than the time left stops here, at once.
        return time.monotonic() + state.upcoming_sleep + MIN_ATTEMPT_S >= deadline

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        wait=wait,
        stop=tenacity.stop_any(tenacity.stop_after_attempt(max_attempts), out_of_time),
        reraise=True,
    )


# -- Circuit breaker ---------------------------------------------------------


class _BreakerLog(pybreaker.CircuitBreakerListener):
    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        log.warning("llm provider %s: circuit %s -> %s", cb.name, getattr(old_state, "name", old_state), new_state.name)


def _request_error(exc: BaseException) -> bool:
    return isinstance(exc, ProviderHTTPError) and exc.status in REQUEST_ERRORS


def circuit_breaker(name: str, config: ProviderConfig, storage: pybreaker.CircuitBreakerStorage) -> pybreaker.CircuitBreaker:
    # Not raising a new error on trip: the failure that tripped it is what the turn records.
    return pybreaker.CircuitBreaker(
        fail_max=config.breaker_failures,
        reset_timeout=config.breaker_cooldown_s,
        exclude=[_request_error],
        listeners=[_BreakerLog()],
        state_storage=storage,
        name=name,
        throw_new_error_on_trip=False,
    )


# -- The provider ------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """What one call asks the model for."""

    model: str
    system: str
    text: str
    max_tokens: int


class StreamingProvider(ABC):
    """An LLM provider on a vendor's streaming client; subclasses open and read the stream.

    ``_start(request, timeout)`` returns the client's stream (with ``response``
    and ``close()``) once the response headers are in; ``_texts(stream, usage)``
    yields its text, fills ``usage`` and raises ProviderStreamError when the
    stream ends without its end marker.
    """

    #: the client's exceptions for a request that got no answer (retried while time is left)
    connection_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, component_id: str, config: ProviderConfig, prompts: SystemPrompts, endpoint: Any):
        """``endpoint`` is the vendor client's resource that ``_start`` calls (``chat.completions``...)."""
        self.id = component_id
        self.config = config
        self.prompts = prompts
        self.endpoint = endpoint
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self.breaker = circuit_breaker(component_id, config, self._storage)

    def generate(self, prompt: Prompt) -> Iterator[str]:
        """Stream the reply; ProviderUnavailable at once while the circuit is open."""
        deadline = (prompt.deadline if prompt.deadline is not None else time.monotonic() + NO_DEADLINE_S) - DEADLINE_MARGIN_S
        if deadline <= time.monotonic():
            # Not the provider's fault, so not the breaker's business.
            raise ProviderTimeout(f"{self.id}: no time left for a call")
        try:
            with self.breaker.calling():
                yield from self._generate(prompt, deadline)
        except pybreaker.CircuitBreakerError:
            raise ProviderUnavailable(f"{self.id}: skipped, circuit open after repeated failures") from None

    def status(self) -> dict[str, Any]:
        """For /admin/status: breaker state and models; never the key."""
        opened_at = self._storage.opened_at
        return {
            "breaker": self.breaker.current_state,
            "failures": self.breaker.fail_counter,
            "openedAt": opened_at.isoformat() if opened_at and self.breaker.current_state != pybreaker.STATE_CLOSED else None,
            "model": self.config.model,
            "fastModel": self.config.fast_model,
        }

    def _generate(self, prompt: Prompt, deadline: float) -> Iterator[str]:
        model = self.config.model_for(prompt, deadline - time.monotonic())
        request = Request(model, self.prompts.build(prompt), prompt.text, self.config.max_tokens)
        stream = self._open(request, deadline)
        watch = DeadlineWatch(stream.response, deadline)
        try:
            for text in self._texts(stream, prompt.usage):
                if time.monotonic() >= deadline:
                    raise ProviderTimeout(f"{self.id}: the deadline passed mid-stream")
                yield text
        except ProviderError:
            raise
        except Exception as exc:
            raise self._failure(exc, deadline, stalled=watch.fired, streaming=True) from None
        finally:
            watch.stop()
            stream.close()

    def _open(self, request: Request, deadline: float) -> Any:
        connect_cap_s = self.config.connect_timeout_ms / 1000
        policy = retry_policy(deadline, self.config.max_attempts, self._transient)
        try:
            return policy(lambda: self._start(request, request_timeout(deadline, connect_cap_s)))
        except ProviderError:
            raise
        except Exception as exc:
            raise self._failure(exc, deadline) from None

    def _transient(self, exc: BaseException) -> bool:
        status = status_of(exc)
        return status in RETRY_STATUSES if status is not None else isinstance(exc, self.connection_errors)

    def _failure(self, exc: Exception, deadline: float, stalled: bool = False, streaming: bool = False) -> ProviderError:
        """The client's exception as a ProviderError, its message redacted and shortened."""
        detail = f"{type(exc).__name__}: {exc}"
        if self.config.api_key:
            detail = detail.replace(self.config.api_key, "[redacted]")
        detail = detail[:DETAIL_MAX_CHARS]
        status = status_of(exc)
        if status is not None:
            return ProviderHTTPError(status, f"{self.id}: HTTP {status} ({detail})")
        if stalled or time.monotonic() >= deadline or _caused_by(exc, httpx2.TimeoutException):
            return ProviderTimeout(f"{self.id}: no reply within the time left ({detail})")
        if streaming:
            return ProviderStreamError(f"{self.id}: the stream broke off ({detail})")
        return ProviderConnectionError(f"{self.id}: no answer ({detail})")

    @abstractmethod
    def _start(self, request: Request, timeout: httpx2.Timeout) -> Any:
        """Send the request; return the client's stream once the response headers are in."""

    @abstractmethod
    def _texts(self, stream: Any, usage: dict[str, int]) -> Iterator[str]:
        """Yield the stream's text and fill ``usage``; ProviderStreamError if it ends early."""


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    """Whether ``exc`` or an exception it was raised from is a ``kind`` (clients wrap transport errors)."""
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False

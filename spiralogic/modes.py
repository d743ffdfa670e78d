"""The service-level mode: full, lite or fallback, the same in every worker and host.

The mode is a row in the database, changed only by the evaluator (which holds
a lease, so one runs at a time) or by an operator; every change is recorded in
``mode_transitions`` with its reason. The evaluator reads the recent turn rows:

- full -> lite: too many turns whose first token came after the soft budget;
- full or lite -> fallback: too many turns that hit the hard budget or met an
  error from a provider;
- lite -> full: after ``lite_recovery_s`` (5 min) of stable turns;
- fallback -> lite: after ``fallback_recovery_s`` (10 min) with an error rate
  under ``recovery_error_ratio`` (1%).

Rates count only the turns that tried a provider. Hysteresis: a trigger needs
``min_turns`` in its window; recovery needs the whole recovery window, and each
of its windows with ``min_turns``, below half the trigger ratios; and no mode
is left before it has been held for its recovery window. Fallback -> baseline is an
operator's decision (``ORCHESTRATOR=baseline``), never automatic.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from spiralogic.clock import as_utc
from spiralogic.flags import RuntimeFlags
from spiralogic.tables import ConsciousnessTurnMeta, ModeTransition, ServiceMode
from spiralogic.turn import MODES

log = logging.getLogger(__name__)
SERVICE = "service"
TURNS = ConsciousnessTurnMeta.__table__
STATE = ServiceMode.__table__
TRANSITIONS = ModeTransition.__table__


@dataclass(frozen=True)
class ModeState:
    mode: str
    reason: str
    since: datetime | None


@dataclass(frozen=True)
class Window:
    """What the turns of one time window say about the providers."""

    turns: int
    slow: int
    hard: int
    errors: int

    def ratio(self, count: int) -> float:
        return count / self.turns if self.turns else 0.0


class ModeController:
    def __init__(
        self,
        engine: Engine,
        flags: RuntimeFlags,
        settings: Any,
        clock: Callable[[], datetime],
        ticks: Callable[[], float] = time.monotonic,
    ):
        self.engine = engine
        self.flags = flags
        self.rules = settings.modes
        self.soft_budget_ms = settings.soft_budget_ms
        self.clock = clock
        # Monotonic, for the read cache: a wall clock stepped back would freeze it.
        self.ticks = ticks
        self._cached = ModeState("full", "initial", None)
        self._read_at: float | None = None

    def state(self) -> ModeState:
        """The mode as stored now (for operators and the evaluator)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(STATE).where(STATE.c.name == SERVICE)).first()
        return ModeState(row.mode, row.reason, as_utc(row.since)) if row else ModeState("full", "initial", None)

    def cached_state(self) -> ModeState:
        """The mode as read at most ``cache_s`` ago: turns must not query the database each time.

        If the database cannot be read, the last known mode holds.
        """
        now = self.ticks()
        if self._read_at is None or now - self._read_at > self.rules.cache_s:
            try:
                self._cached = self.state()
            except sa.exc.SQLAlchemyError as exc:
                log.warning("service mode unreadable (%s); keeping %s", type(exc).__name__, self._cached.mode)
            self._read_at = now
        return self._cached

    def mode_for_turn(self, rng: random.Random = random._inst) -> str:
        """Where a new turn starts, given the operator switches and the service mode.

        In fallback a small share of turns still try lite: they are the probes
        whose outcome lets the evaluator see the providers recover.
        """
        flags = self.flags.all()
        if flags["forced_mode"] in MODES:
            return flags["forced_mode"]
        mode = self.cached_state().mode
        if mode == "fallback" and rng.random() < self.rules.fallback_probe_ratio:
            mode = "lite"
        if mode == "full" and flags["lite_by_default"]:
            mode = "lite"
        return mode

    def evaluate(self) -> ModeState:
        """Apply at most one transition for the current metrics; return the resulting state."""
        now = self.clock()
        current = self.state()
        held = now - current.since if current.since else timedelta.max
        target, reason = self._decide(current.mode, held, now)
        if target != current.mode:
            self.transition(target, reason, actor="controller", now=now)
            return ModeState(target, reason, now)
        return current

    def _decide(self, mode: str, held: timedelta, now: datetime) -> tuple[str, str]:
        rules = self.rules
        recent = self.window(now - timedelta(seconds=rules.window_s), now)
        if recent.turns >= rules.min_turns and mode != "fallback":
            if recent.ratio(recent.hard) >= rules.fallback_hard_ratio:
                return "fallback", f"{recent.ratio(recent.hard):.0%} of turns hit the hard budget"
            if recent.ratio(recent.errors) >= rules.fallback_error_ratio:
                return "fallback", f"{recent.ratio(recent.errors):.0%} of turns met provider errors"
            if mode == "full" and recent.ratio(recent.slow) >= rules.lite_slow_ratio:
                return "lite", f"{recent.ratio(recent.slow):.0%} of first tokens missed the soft budget"
        if mode == "lite" and self._stable(now, held, rules.lite_recovery_s, self._lite_calm):
            return "full", f"stable for {rules.lite_recovery_s // 60} minutes"
        if mode == "fallback" and self._stable(now, held, rules.fallback_recovery_s, self._fallback_calm):
            return "lite", f"error rate under {rules.recovery_error_ratio:.0%} for {rules.fallback_recovery_s // 60} minutes"
        return mode, ""

    def _stable(self, now: datetime, held: timedelta, span_s: int, calm: Callable[[Window], bool]) -> bool:
        """Held for ``span_s`` and calm over all of it, and in each of its windows with
        ``min_turns`` to judge: over the whole span alone, one bad minute would hide among quiet ones."""
        span, step = timedelta(seconds=span_s), timedelta(seconds=self.rules.window_s)
        if held < span or not calm(self.window(now - span, now)):
            return False
        ends = (now - k * step for k in range(math.ceil(span / step)))
        parts = (self.window(max(end - step, now - span), end) for end in ends)
        return all(calm(part) for part in parts if part.turns >= self.rules.min_turns)

    def _lite_calm(self, window: Window) -> bool:
        # Under half of each trigger ratio (hysteresis), so the service does not flap at the threshold.
        rules = self.rules
        return (
            window.ratio(window.slow) < rules.lite_slow_ratio / 2
            and window.ratio(window.hard) < rules.fallback_hard_ratio / 2
            and window.ratio(window.errors) < rules.fallback_error_ratio / 2
        )

    def _fallback_calm(self, window: Window) -> bool:
        rules = self.rules
        return (
            window.ratio(window.errors) < rules.recovery_error_ratio
            and window.ratio(window.hard) < rules.fallback_hard_ratio / 2
        )

    def window(self, start: datetime, end: datetime) -> Window:
        first_token = TURNS.c.metadata["firstTokenMs"].as_integer()
        # The JSON text of the list, on both databases: a LIKE on it finds the marker.
        hard = TURNS.c.metadata["degradations"].as_string().like('%"hard_budget"%')
        error = TURNS.c.resonance["error"].as_string().is_not(None)
        # Only turns that tried a provider: those answered in fallback from the start (service in
        # fallback, or shed under load) never fail, and would dilute the rates recovery is judged on.
        tried = sa.or_(TURNS.c.orchestrator_mode != "fallback", hard, error)
        query = sa.select(
            sa.func.count().filter(tried),
            sa.func.count().filter(tried, first_token > self.soft_budget_ms),
            sa.func.count().filter(hard),
            sa.func.count().filter(error),
        ).where(TURNS.c.created_at > start, TURNS.c.created_at <= end)
        with self.engine.connect() as conn:
            return Window(*conn.execute(query).one())

    def transition(self, mode: str, reason: str, *, actor: str, now: datetime) -> None:
        """Set the service mode and record why; used by the evaluator and by operators."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        previous = self.state().mode
        with self.engine.begin() as conn:
            values = {"mode": mode, "reason": reason, "since": now}
            if not conn.execute(sa.update(STATE).where(STATE.c.name == SERVICE).values(**values)).rowcount:
                conn.execute(sa.insert(STATE).values(name=SERVICE, **values))
            conn.execute(sa.insert(TRANSITIONS).values(at=now, from_mode=previous, to_mode=mode, reason=reason, actor=actor))

    def transitions(self, limit: int = 20) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(TRANSITIONS).order_by(TRANSITIONS.c.id.desc()).limit(limit))
            return [{**row._mapping, "at": as_utc(row.at)} for row in rows]

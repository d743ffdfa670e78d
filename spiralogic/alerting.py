"""Alert rules with Prometheus semantics, evaluated from the service's own telemetry.

A rule's condition is checked over its ``window`` at every evaluation. The
states: inactive -> pending (condition true; the ``for`` timer starts) ->
firing (true for ``for``) -> resolved (false again). A false evaluation
resets the timer. When a metric has no data the rule's ``no_data`` policy
decides: ``ok`` (treat as false), ``keep`` (leave the state as it is) or
``alerting`` (treat as true). State lives in the database, so a restart
neither resets timers nor pages again. Rules whose ``action`` is ``rollback``
are the playbook's rollback triggers: when one fires, the rollout is aborted.
"""

from __future__ import annotations

import logging
import operator
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Callable, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Engine

from spiralogic.clock import as_utc
from spiralogic.tables import AlertEvent, AlertState

log = logging.getLogger(__name__)
STATE = AlertState.__table__
EVENTS = AlertEvent.__table__
COMPARE = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
#: transitions that reach people through channels; every transition reaches the alert_changed hook
NOTIFIED = {"firing", "resolved"}

#: (metric name, since, until, orchestrator or None) -> value, or None when there is no data
MetricSource = Callable[[str, datetime, datetime, "str | None"], "float | None"]


class NotReady(Exception):
    """Raised by a metric whose window is still being read (the evaluator has just started):
    its rules keep their state for the round, as if nothing was evaluated."""


class Rule(BaseModel):
    """One rule of config/alerts.toml."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str
    metric: str
    #: only this orchestrator's turns count; None: all turns
    orchestrator: str | None = None
    op: Literal[">", ">=", "<", "<="]
    threshold: float
    for_s: int = Field(alias="for", ge=0)
    window_s: int = Field(alias="window", gt=0)
    severity: Literal["INFO", "WARN", "PAGE"]
    channel: str
    no_data: Literal["ok", "keep", "alerting"] = "ok"
    action: Literal["notify", "rollback"] = "notify"
    summary: str

    def holds(self, value: float) -> bool:
        return COMPARE[self.op](value, self.threshold)


@dataclass(frozen=True)
class Transition:
    """An alert's change of state, as channels and the ``alert_changed`` hook see it."""

    rule: Rule
    from_state: str
    to_state: str
    value: float | None
    at: datetime

    @property
    def text(self) -> str:
        shown = "no data" if self.value is None else f"{self.value:g}"
        return f"[{self.to_state.upper()}] {self.rule.name} ({self.rule.severity}): {self.rule.summary} (now {shown})"


def load_rules(path: Path) -> list[Rule]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return [Rule(name=name, **body) for name, body in data.get("rules", {}).items()]


def load_routes(path: Path) -> dict[str, dict]:
    """Channel name -> its delivery table (``via``: channel plugin ids)."""
    return tomllib.loads(path.read_text(encoding="utf-8")).get("channels", {})


def step(state: str, since: datetime, condition: bool | None, rule: Rule, now: datetime) -> tuple[str, datetime]:
    """The next (state, since) for one evaluation; ``condition`` None means no data."""
    if condition is None:
        if rule.no_data == "keep":
            return state, since
        condition = rule.no_data == "alerting"
    if not condition:
        return ("resolved", now) if state == "firing" else ("inactive", since if state == "inactive" else now)
    if state == "firing":
        return state, since
    if state != "pending":
        state, since = "pending", now
    if now - since >= timedelta(seconds=rule.for_s):
        return "firing", now
    return state, since


class AlertEngine:
    def __init__(self, engine: Engine, rules: list[Rule], metrics: MetricSource, on_transition: Callable[[Transition], None]):
        self.engine = engine
        self.rules = rules
        self.metrics = metrics
        self.on_transition = on_transition

    def evaluate(self, now: datetime) -> list[Transition]:
        """Evaluate every rule once; persist and announce the transitions."""
        stored = self.states()
        transitions = []
        for rule in self.rules:
            try:
                value = self._value(rule, now)
            except NotReady:
                log.info("alert %s: metric %s still being read; state kept", rule.name, rule.metric)
                continue
            condition = None if value is None else rule.holds(value)
            state, since = stored.get(rule.name, ("inactive", now))
            new_state, new_since = step(state, since, condition, rule, now)
            self._save(rule.name, new_state, new_since, value, now)
            if new_state != state and not (state == "resolved" and new_state == "inactive"):
                transitions.append(Transition(rule, state, new_state, value, now))
        for transition in transitions:
            self._record(transition)
            self.on_transition(transition)
        return transitions

    def states(self) -> dict[str, tuple[str, datetime]]:
        with self.engine.connect() as conn:
            return {row.name: (row.state, as_utc(row.since)) for row in conn.execute(sa.select(STATE))}

    def events(self, limit: int = 50) -> list[dict]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(EVENTS).order_by(EVENTS.c.id.desc()).limit(limit))
            return [{**row._mapping, "at": as_utc(row.at)} for row in rows]

    def _value(self, rule: Rule, now: datetime) -> float | None:
        try:
            return self.metrics(rule.metric, now - timedelta(seconds=rule.window_s), now, rule.orchestrator)
        except sa.exc.SQLAlchemyError:
            log.warning("alert %s: metric %s unavailable", rule.name, rule.metric)
            return None

    def _save(self, name: str, state: str, since: datetime, value: float | None, now: datetime) -> None:
        values = {"state": state, "since": since, "value": value, "evaluated_at": now}
        with self.engine.begin() as conn:
            if not conn.execute(sa.update(STATE).where(STATE.c.name == name).values(**values)).rowcount:
                conn.execute(sa.insert(STATE).values(name=name, **values))

    def _record(self, transition: Transition) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(EVENTS).values(
                    at=transition.at,
                    name=transition.rule.name,
                    from_state=transition.from_state,
                    to_state=transition.to_state,
                    value=transition.value,
                    summary=transition.text[:500],
                )
            )

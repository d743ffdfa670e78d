"""Everything the operator's launch dashboard shows, as one JSON document.

The series come from the monitoring queries (one database pass each, all on
one connection), the verdict from the promotion gates over their own hold
window, and the switches, mode, alerts and audit trails from the app's
controllers. Kept cheap: the page asks for it every few seconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Callable

from spiralogic import gates, monitoring
from spiralogic.alerting import Rule
from spiralogic.state import AppState

#: the window a request may ask for: per-minute series over a day are 1440 points each
SHORTEST, LONGEST = "5m", "1d"
DEFAULT_WINDOW = "2h"
#: how many entries each audit trail shows
RECENT = 15
ACTIVE_ALERTS = ("firing", "pending")

#: JSON key -> monitoring query over the window
SERIES: dict[str, Callable[..., Any]] = {
    "latency": monitoring.latency_per_minute,
    "firstToken": monitoring.first_token_p95_per_minute,
    "errors": monitoring.error_rate_per_minute,
    "fallback": monitoring.fallback_rate_per_minute,
    "cache": monitoring.cache_hit_ratio_per_hour,
    "modes": monitoring.mode_distribution,
}


def parse_window(text: str | None) -> timedelta:
    """``30m``, ``2h``, ``1d``: from :data:`SHORTEST` to :data:`LONGEST`."""
    length = monitoring.parse_duration(text or DEFAULT_WINDOW, "window")
    if not monitoring.parse_duration(SHORTEST, "window") <= length <= monitoring.parse_duration(LONGEST, "window"):
        raise monitoring.WindowError("window", f"window: from {SHORTEST} to {LONGEST}, got {text!r}")
    return length


def snapshot(state: AppState, window: timedelta, now: datetime, orchestrator: str | None = None) -> dict[str, Any]:
    """The dashboard's data at ``now``: series over ``window``, the rest as it stands."""
    since = now - window
    with state.engine.connect() as conn:
        series = {key: monitoring.as_json(query(conn, since, now, orchestrator)) for key, query in SERIES.items()}
        evaluation = gates.evaluate(conn, gates.load_gates(), now)
    return {
        "generatedAt": now.isoformat(),
        "window": {"since": since.isoformat(), "until": now.isoformat(), "seconds": int(window.total_seconds())},
        "orchestrator": orchestrator,
        **series,
        "gates": gates.evaluation_json(evaluation),
        "rollout": _rollout(state),
        "mode": _mode(state),
        "alerts": _alerts(state),
    }


def _rollout(state: AppState) -> dict[str, Any]:
    status = state.rollout.status()
    # An unset percent flag defers to the rollout.percent setting, as routing does.
    from_flag = status["percent"] is not None
    return {
        **status,
        "percent": status["percent"] if from_flag else state.settings.rollout.percent,
        "percentSource": "flag" if from_flag else "settings",
    }


def _mode(state: AppState) -> dict[str, Any]:
    current = state.modes.state()
    return {
        "current": current.mode,
        "reason": current.reason,
        "since": current.since.isoformat() if current.since else None,
        "transitions": _timed(state.modes.transitions(RECENT)),
    }


def _alerts(state: AppState) -> dict[str, Any]:
    """Firing alerts first, then pending, each with its rule's severity and summary."""
    rules = {rule.name: rule for rule in state.alerts.rules}
    active = [
        _active_alert(name, status, since, rules.get(name))
        for name, (status, since) in state.alerts.states().items()
        if status in ACTIVE_ALERTS
    ]
    active.sort(key=lambda alert: (ACTIVE_ALERTS.index(alert["state"]), alert["since"]))
    return {"active": active, "events": _timed(state.alerts.events(RECENT))}


def _active_alert(name: str, status: str, since: datetime, rule: Rule | None) -> dict[str, Any]:
    # A state row can outlive its rule (removed from config/alerts.toml): then it has no details.
    return {
        "name": name,
        "state": status,
        "since": since.isoformat(),
        "severity": rule.severity if rule else None,
        "summary": rule.summary if rule else None,
        "action": rule.action if rule else None,
    }


def _timed(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "at": row["at"].isoformat()} for row in rows]

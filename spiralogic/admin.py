"""The operator's HTTP surface under /admin, behind a bearer token.

Without a configured token (``SPIRALOGIC_ADMIN_TOKEN``) the whole surface is
hidden (404), never open.
"""

from __future__ import annotations

import hmac
import os
from datetime import datetime, timezone
from functools import wraps

import sqlalchemy as sa
from flask import Blueprint, jsonify, request

from spiralogic import gates, memo, monitoring
from spiralogic.errors import ApiError
from spiralogic.settings import ConfigError
from spiralogic.state import app_state
from spiralogic.turn import ORCHESTRATORS

bp = Blueprint("admin", __name__, url_prefix="/admin")


def require_admin(view):
    @wraps(view)
    def guarded(*args, **kwargs):
        token = app_state().settings.admin_token
        if not token:
            raise ApiError(404, "not_found", "The requested URL was not found on the server.")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        # Constant-time comparison: the token must not leak through response timing.
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise ApiError(401, "unauthorized", "a valid admin bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        return view(*args, **kwargs)

    return guarded


@bp.get("/status")
@require_admin
def status():
    """The service mode (and why, since when), operator switches, recent transitions."""
    state = app_state()
    return jsonify(
        {
            **_stored_status(state),
            "worker": {"pid": os.getpid(), "inFlight": state.admission.in_flight, "loopLagMs": round(state.admission.lag_ms, 1)},
            "components": {family: registry.statuses() for family, registry in state.registries.items()},
            "telemetry": dict(state.telemetry.counts),
            "feedback": dict(state.ratings.counts),
            "history": dict(state.history.counts),
            # Counts above are this worker's; the journals are the host's, on disk.
            "journals": {
                name: {"pending": journal.pending(), "rejected": journal.rejected()}
                for name, journal in (("telemetry", state.telemetry.journal), ("feedback", state.ratings.journal))
            },
            "counters": dict(state.counters),
        }
    )


def _stored_status(state) -> dict:
    """The mode, switches and transitions, read from the database; null while it is away, when
    the rest of the status (the journals above all) is what an operator comes for."""
    try:
        mode = state.modes.state()
        return {
            "mode": {"current": mode.mode, "reason": mode.reason, "since": mode.since.isoformat() if mode.since else None},
            "flags": state.flags.all(fresh=True),
            "transitions": [{**row, "at": row["at"].isoformat()} for row in state.modes.transitions()],
        }
    except sa.exc.SQLAlchemyError:
        return {"mode": None, "flags": None, "transitions": None}


@bp.post("/cache/clear")
@require_admin
def cache_clear():
    """Purge the memoized results (the playbook's "purge cold caches"): ``{"dropped": N}``."""
    try:
        dropped = memo.clear(app_state().cache)
    except memo.CacheUnavailable as exc:
        raise ApiError(503, "unavailable", str(exc), headers={"Retry-After": "5"}) from exc
    return jsonify({"dropped": dropped})


@bp.get("/metrics/<name>")
@require_admin
def metric(name):
    """A named monitoring query (``spiralogic metrics NAME``): ``?since=2h&until=...&orchestrator=...``."""
    if name not in monitoring.METRICS:
        raise ApiError(404, "unknown_metric", f"no metric {name!r}; known: {', '.join(monitoring.METRICS)}", "name")
    _only_parameters("since", "until", "orchestrator")
    orchestrator = request.args.get("orchestrator")
    if orchestrator is not None and orchestrator not in ORCHESTRATORS:
        raise ApiError(422, "invalid_value", f"orchestrator: one of {', '.join(ORCHESTRATORS)}", "orchestrator")
    try:
        since, until = monitoring.resolve_window(name, request.args.get("since"), request.args.get("until"), _now())
    except monitoring.WindowError as exc:
        raise ApiError(422, "invalid_value", str(exc), exc.field) from exc
    result = monitoring.METRICS[name].query(app_state().engine, since, until, orchestrator)
    window = {"since": since.isoformat(), "until": until.isoformat(), "orchestrator": orchestrator}
    return jsonify({"metric": name, **window, "result": monitoring.as_json(result)})


@bp.get("/gates")
@require_admin
def promotion_gates():
    """The promotion gates (``spiralogic gates``): ``?window=60m&until=...``; 200 whether or not they hold."""
    _only_parameters("window", "until")
    now = _now()
    try:
        window = request.args.get("window")
        length = gates.parse_window(window) if window else None
        until = monitoring.parse_moment(request.args["until"], now, "until") if "until" in request.args else now
    except monitoring.WindowError as exc:
        raise ApiError(422, "invalid_value", str(exc), exc.field) from exc
    try:
        rules = gates.load_gates()
    except ConfigError as exc:
        raise ApiError(500, "invalid_gates_config", str(exc)) from exc
    evaluation = gates.evaluate(app_state().engine, rules, until, length)
    return jsonify(gates.evaluation_json(evaluation))


def _only_parameters(*names: str) -> None:
    for given in request.args:
        if given not in names:
            raise ApiError(422, "unknown_parameter", f"unknown query parameter {given!r}; known: {', '.join(names)}", given)


def _now() -> datetime:
    return datetime.now(timezone.utc)

"""The operator's HTTP surface under /admin, behind a bearer token.

Without a configured token (``SPIRALOGIC_ADMIN_TOKEN``) the whole surface is
hidden (404), never open.
"""

from __future__ import annotations

import hmac
import os
from functools import wraps

from flask import Blueprint, jsonify, request

from spiralogic.errors import ApiError
from spiralogic.state import app_state

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
    mode = state.modes.state()
    return jsonify(
        {
            "mode": {"current": mode.mode, "reason": mode.reason, "since": mode.since.isoformat() if mode.since else None},
            "flags": state.flags.all(fresh=True),
            "transitions": [{**row, "at": row["at"].isoformat()} for row in state.modes.transitions()],
            "worker": {"pid": os.getpid(), "inFlight": state.admission.in_flight, "loopLagMs": round(state.admission.lag_ms, 1)},
            "components": {family: registry.statuses() for family, registry in state.registries.items()},
            "telemetry": dict(state.telemetry.counts),
            "counters": dict(state.counters),
        }
    )

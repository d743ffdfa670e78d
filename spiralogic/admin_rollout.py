"""The rollout over the admin API: the same moves as ``spiralogic rollout``."""

from __future__ import annotations

from flask import Blueprint, jsonify
from pydantic import BaseModel, ConfigDict, Field

from spiralogic.admin import require_admin
from spiralogic.api import parse_json_body
from spiralogic.clock import utcnow
from spiralogic.errors import ApiError
from spiralogic.rollout import Move, RolloutRefused
from spiralogic.state import app_state

bp = Blueprint("admin_rollout", __name__, url_prefix="/admin/rollout")


class MoveRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    reason: str = Field(min_length=1, max_length=500)
    actor: str = Field(default="admin-api", min_length=1, max_length=100)
    force: bool = False
    percent: float | None = Field(default=None, ge=0, le=100)


@bp.get("")
@require_admin
def status():
    return jsonify(app_state().rollout.status())


@bp.post("/<action>")
@require_admin
def move(action: str):
    body = parse_json_body(MoveRequest)
    control, step = app_state().rollout, Move(f"api:{body.actor}", body.reason, utcnow())
    moves = {
        "promote": lambda: control.promote(step, force=body.force),
        "abort": lambda: control.abort(step),
        "retry": lambda: control.retry(step),
        "kill": lambda: control.kill(step, True),
        "unkill": lambda: control.kill(step, False),
        "percent": lambda: control.set_percent(_required_percent(body), step),
    }
    if action not in moves:
        raise ApiError(404, "not_found", f"no rollout action {action!r}; one of {sorted(moves)}")
    try:
        moves[action]()
    except RolloutRefused as exc:
        raise ApiError(409, "rollout_refused", str(exc)) from None
    return jsonify(control.status())


def _required_percent(body: MoveRequest) -> float:
    if body.percent is None:
        raise ApiError(422, "missing_field", "percent is required", "percent")
    return body.percent

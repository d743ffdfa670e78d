"""The public HTTP API: chat, health and the OpenAPI document."""

from __future__ import annotations

import json
import re
import uuid

from flask import Blueprint, current_app, jsonify, request
from pydantic import ValidationError

from spiralogic.db import is_reachable
from spiralogic.errors import ApiError, from_validation_error
from spiralogic.openapi import openapi_document
from spiralogic.pipeline import ChatPipeline
from spiralogic.routing import HEADER
from spiralogic.schemas import ChatRequest
from spiralogic.state import app_state

bp = Blueprint("api", __name__)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _reject_duplicate_keys(pairs):
    keys = [key for key, _ in pairs]
    if len(keys) != len(set(keys)):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ApiError(400, "duplicate_key", f"key {duplicate!r} appears more than once", duplicate)
    return dict(pairs)


def parse_json_body(model):
    """Validate the request body into ``model``, or raise an ApiError with a stable code."""
    if not request.mimetype == "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    raw = request.get_data(cache=False)
    try:
        payload = json.loads(raw, object_pairs_hook=_reject_duplicate_keys)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc.__class__.__name__}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_type", "the body must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def request_id() -> str:
    given = request.headers.get("x-request-id", "")
    return given if REQUEST_ID.match(given) else uuid.uuid4().hex


@bp.post("/api/oracle/chat")
def chat():
    chat_request = parse_json_body(ChatRequest)
    result = ChatPipeline(app_state()).run(chat_request, header=request.headers.get(HEADER), request_id=request_id())
    response = jsonify(result.body)
    response.headers["x-orchestrator"] = result.turn.orchestrator
    response.headers["x-orchestrator-mode"] = result.turn.mode
    response.headers["x-request-id"] = result.turn.request_id
    return response


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok", "checks": {}})


@bp.get("/readyz")
def readyz():
    state = app_state()
    checks = {
        "database": is_reachable(state.engine),
        "orchestrators": state.registries["orchestrators"].ids(),
    }
    ready = checks["database"] and "baseline" in checks["orchestrators"]
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), 200 if ready else 503


@bp.get("/api/openapi.json")
def openapi():
    return current_app.response_class(json.dumps(openapi_document()), mimetype="application/json")

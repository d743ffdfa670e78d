"""The public HTTP API: chat, health and the OpenAPI document."""

from __future__ import annotations

import json
import re
import uuid

import orjson
from flask import Blueprint, current_app, jsonify, request
from pydantic import ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from spiralogic import limits
from spiralogic.admission import Decision
from spiralogic.canary import canary_header
from spiralogic.db import is_reachable
from spiralogic.errors import ApiError, from_validation_error
from spiralogic.logging_setup import current_request_id
from spiralogic.openapi import openapi_document
from spiralogic.pipeline import ChatPipeline
from spiralogic.schemas import ChatRequest
from spiralogic.state import app_state

bp = Blueprint("api", __name__)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _reject_duplicate_keys(pairs):
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise ApiError(400, "duplicate_key", f"key {key!r} appears more than once", key)
        seen.add(key)
    return dict(pairs)


def _reject_constant(name):
    # Python's json accepts NaN and Infinity; JSON (RFC 8259) does not.
    raise ApiError(400, "malformed_json", f"the body is not valid JSON: {name} is not a JSON value")


def _read_body() -> bytes:
    raw = request.get_data(cache=False)
    # Werkzeug checks Content-Length against the limit, but cuts a chunked body
    # (no Content-Length) silently at the limit: anything left means too large.
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(raw) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return raw


def _decode(raw: bytes) -> str:
    # JSON on the wire is UTF-8 (RFC 8259); json.loads(bytes) would also guess UTF-16/32.
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_encoding", f"the body is not UTF-8 (bad byte at offset {exc.start})") from None


def parse_json_body(model):
    """Validate the request body into ``model``, or raise an ApiError with a stable code."""
    if not request.mimetype == "application/json":
        raise ApiError(415, "unsupported_media_type", "send the body as application/json")
    text = _decode(_read_body())
    try:
        payload = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise ApiError(400, "malformed_json", "the body is not valid JSON: nested too deeply") from None
    except ValueError:  # the one other failure: an integer with more digits than Python converts
        raise ApiError(400, "malformed_json", "the body is not valid JSON: a number has too many digits") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_type", "the body must be a JSON object")
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise from_validation_error(exc) from None


def request_id() -> str:
    given = request.headers.get("x-request-id", "")
    return given if REQUEST_ID.fullmatch(given) else uuid.uuid4().hex


@bp.post("/api/oracle/chat")
def chat():
    """A turn, as one JSON answer or, with ``Accept: text/event-stream``, as Server-Sent Events.

    A stream's headers leave before the turn has run, so its
    ``x-orchestrator-mode`` is the mode the turn started in; the ``done`` event
    carries the mode it ran in.
    """
    chat_request = parse_json_body(ChatRequest)
    limits.check(chat_request.userId)
    state = app_state()
    header, header_ignored = canary_header(request, state.turn_settings.canary)
    decision = state.admission.enter()
    if decision is Decision.REJECT:
        retry_after = str(state.settings.admission.retry_after_s)
        raise ApiError(503, "overloaded", "the service is at capacity; retry shortly", headers={"Retry-After": retry_after})
    try:
        shed = decision is Decision.DEGRADE
        mode = "fallback" if shed else state.modes.mode_for_turn()
        stream = request.accept_mimetypes.best == "text/event-stream"
        turn, events = ChatPipeline(state).start(
            chat_request,
            header=header,
            header_ignored=header_ignored,
            request_id=current_request_id(),
            mode=mode,
            stream=stream,
            overloaded=shed,
        )
        if stream:
            response = current_app.response_class(server_sent_events(events), mimetype="text/event-stream")
            response.headers["cache-control"] = "no-cache"
        else:
            *_, done = events
            response = current_app.response_class(orjson.dumps(done.payload), mimetype="application/json")
    except BaseException:
        state.admission.leave()
        raise
    response.call_on_close(state.admission.leave)
    response.headers["x-orchestrator"] = turn.orchestrator
    response.headers["x-orchestrator-mode"] = turn.mode
    response.headers["x-request-id"] = turn.request_id
    return response


def server_sent_events(events):
    for event in events:
        yield b"event: %s\ndata: %s\n\n" % (event.kind.encode(), orjson.dumps(event.payload))


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

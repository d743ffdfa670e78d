"""JSON errors with stable codes, for everything a client can get wrong."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask, jsonify
from pydantic import ValidationError
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

#: HTTP status -> the code used when nothing more specific applies
HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, field: str | None = None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field
        self.headers = headers or {}


def error_response(status: int, code: str, message: str, field: str | None = None, headers=None):
    response = jsonify({"error": {"code": code, "message": message, "field": field}})
    response.status_code = status
    response.headers.update(headers or {})
    return response


def from_validation_error(exc: ValidationError) -> ApiError:
    """The first problem, as 400 (wrong JSON type) or 422 (missing or invalid value)."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    kind = first["type"]
    if kind == "missing":
        return ApiError(422, "missing_field", f"{field} is required", field)
    if _wrong_json_type(first):
        return ApiError(400, "invalid_type", f"{field}: {first['msg']}", field)
    return ApiError(422, "invalid_value", f"{field}: {first['msg']}", field)


def _wrong_json_type(error) -> bool:
    # Every enum is of strings, so 5 for an element is a wrong type (400), not an unknown name (422).
    if error["type"] == "literal_error":
        return not isinstance(error["input"], str)
    return error["type"].endswith("_type")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.field, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        # Keep what tells a client how to retry; the rest (Content-Type...) is ours to set.
        kept = {name: value for name, value in exc.get_headers() if name in ("Allow", "Retry-After", "WWW-Authenticate")}
        return error_response(status, HTTP_CODES.get(status, "http_error"), exc.description or exc.name, None, kept)

    @app.errorhandler(sa.exc.OperationalError)
    def _database_away(exc: sa.exc.OperationalError):
        log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
        return error_response(503, "unavailable", "the database is unavailable; retry shortly", None, {"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "the server failed to handle this request")

"""The OpenAPI 3 document, generated from the models that validate requests."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pydantic.json_schema import models_json_schema

from spiralogic.schemas import (
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    FeedbackQueuedResponse,
    FeedbackRequest,
    FeedbackResponse,
    Health,
)

REF = "#/components/schemas/{model}"


def _json(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=schema_name)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): {"description": "Error", "content": _json("ErrorResponse")} for status in statuses}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [
            (ChatRequest, "validation"),
            (ChatResponse, "serialization"),
            (FeedbackRequest, "validation"),
            (FeedbackResponse, "serialization"),
            (FeedbackQueuedResponse, "serialization"),
            (ErrorResponse, "serialization"),
            (Health, "serialization"),
        ],
        ref_template=REF,
    )
    chat_headers = {
        name: {"schema": {"type": "string"}, "description": text}
        for name, text in {
            "x-orchestrator": "baseline or spiralogic: who answered.",
            "x-orchestrator-mode": "full, lite or fallback: how the turn ran.",
            "x-request-id": "The request id, also in meta.requestId and the logs.",
        }.items()
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Spiralogic", "version": "1", "description": "The oracle chat API."},
        "paths": {
            "/api/oracle/chat": {
                "post": {
                    "summary": "Send a message; the baseline or spiralogic orchestrator answers.",
                    "parameters": [
                        {
                            "name": "x-experiment-spiralogic",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string", "enum": ["on", "off"]},
                            "description": "Force the canary (on) or baseline (off).",
                        }
                    ],
                    "requestBody": {"required": True, "content": _json("ChatRequest")},
                    "responses": {
                        "200": {"description": "The reply", "headers": chat_headers, "content": _json("ChatResponse")},
                        **_errors(400, 413, 415, 422, 429, 503),
                    },
                }
            },
            "/api/oracle/feedback": {
                "post": {
                    "summary": "Rate one of the user's turns; a second rating of the same turn replaces the first.",
                    "requestBody": {"required": True, "content": _json("FeedbackRequest")},
                    "responses": {
                        "201": {"description": "The rating stands", "content": _json("FeedbackResponse")},
                        "202": {"description": "Queued on disk while the database is away; stored after the same checks", "content": _json("FeedbackQueuedResponse")},
                        **_errors(400, 404, 413, 415, 422, 429, 503),
                    },
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "Alive", "content": _json("Health")}}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness: database reachable, plugins loaded",
                    "responses": {
                        "200": {"description": "Ready", "content": _json("Health")},
                        "503": {"description": "Not ready", "content": _json("Health")},
                    },
                }
            },
        },
        "components": {"schemas": schemas["$defs"]},
    }

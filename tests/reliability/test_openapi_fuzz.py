"""Schemathesis against the API's own OpenAPI document, in process over WSGI: on
SQLite and PostgreSQL, no generated request (valid or not) gets a 5xx, and every
answer has a documented status, content type, headers and body."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from werkzeug import Client

from spiralogic import feedback
from spiralogic.openapi import openapi_document

# Read here rather than from an app fixture: pytest makes one test per operation at collection,
# before fixtures exist (schemathesis's fixture loader, one test for all, fails on pytest 9.2).
# test_the_fuzzed_document_is_the_served_one holds it to what GET /api/openapi.json serves.
schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


class ServerClient(Client):
    """Closes each response once read, as a WSGI server does. Schemathesis's own client leaves
    them open, so a chat turn's admission slot (released on close) would never come back."""

    def open(self, *args, **kwargs):
        return super().open(*args, buffered=True, **kwargs)


@pytest.fixture
def served(database_url, make_app, monkeypatch):
    """An app per operation and database; database_url comes first so that its PostgreSQL
    schema outlives the app, whose telemetry is drained when it is closed."""
    # A generated turnId is never a real turn: waiting for its telemetry row would cost ~1 s each.
    monkeypatch.setattr(feedback, "row_wait_s", lambda flush_interval_ms: 0.0)
    return make_app(database_url)


def test_the_fuzzed_document_is_the_served_one(client):
    assert client.get("/api/openapi.json").get_json() == schema.raw_schema


@schema.parametrize()
# About 15 s for both databases on an idle two-core machine. No request relies on what an earlier one left in the app.
@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_no_server_error_and_every_answer_is_documented(case, served):
    case.call_and_validate(app=served, session=ServerClient(served), checks=CHECKS)

"""The OpenAPI document: valid OpenAPI 3.1, generated from the models that
validate requests, and true of the responses the API really sends."""

import typing

import jsonschema
import pytest
from openapi_spec_validator import validate

from spiralogic.schemas import ChatRequest
from spiralogic.state import app_state

CHAT = "/api/oracle/chat"
FEEDBACK = "/api/oracle/feedback"
VALID = {"userId": "smoke-test", "text": "Help me find clarity", "element": "air"}
#: pydantic constraint attribute -> JSON Schema keyword
CONSTRAINTS = {"min_length": "minLength", "max_length": "maxLength", "pattern": "pattern"}


@pytest.fixture
def document(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    return response.get_json()


def validator(document, name):
    """A JSON Schema 2020-12 validator (OpenAPI 3.1's dialect) for one component."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def non_null(prop):
    """The schema of an optional property without its ``null`` branch."""
    branches = [branch for branch in prop.get("anyOf", [prop]) if branch.get("type") != "null"]
    assert len(branches) == 1, prop
    return branches[0]


def model_constraints(field) -> dict:
    return {
        keyword: getattr(item, attr)
        for item in field.metadata
        for attr, keyword in CONSTRAINTS.items()
        if getattr(item, attr, None) is not None
    }


def test_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)


def refs(node):
    if isinstance(node, dict):
        yield from [node["$ref"]] if "$ref" in node else []
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_every_ref_points_to_a_component(document):
    components = {f"#/components/schemas/{name}" for name in document["components"]["schemas"]}
    assert {"ChatRequest", "ChatResponse", "ErrorResponse"} <= set(document["components"]["schemas"])
    assert set(refs(document)) <= components


def test_chat_operation_documents_request_and_error_statuses(document):
    operation = document["paths"][CHAT]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ChatRequest"}
    for status in ("400", "413", "415", "422"):
        assert operation["responses"][status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}


def test_chat_request_schema_has_the_models_fields_and_constraints(document):
    schema = document["components"]["schemas"]["ChatRequest"]
    fields = ChatRequest.model_fields
    assert set(schema["properties"]) == set(fields)
    assert set(schema["required"]) == {name for name, field in fields.items() if field.is_required()} == {"userId", "text"}
    for name, field in fields.items():
        prop = non_null(schema["properties"][name])
        for keyword, value in model_constraints(field).items():
            assert prop[keyword] == value, (name, keyword)
        if not field.is_required():
            assert schema["properties"][name]["default"] == field.default, name
    element = non_null(schema["properties"]["element"])
    assert element["enum"] == list(typing.get_args(typing.get_args(fields["element"].annotation)[0]))
    assert non_null(schema["properties"]["voice"])["type"] == "boolean"
    # the spec's numbers, so a change to the model is a deliberate one
    assert (non_null(schema["properties"]["userId"])["minLength"], non_null(schema["properties"]["userId"])["maxLength"]) == (1, 128)
    assert (non_null(schema["properties"]["text"])["minLength"], non_null(schema["properties"]["text"])["maxLength"]) == (1, 4000)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(VALID, id="valid"),
        pytest.param({**VALID, "voice": True, "sessionId": "s-1", "element": None}, id="all-fields"),
        pytest.param({"userId": "u" * 128, "text": "x"}, id="bounds"),
        pytest.param({"text": "x"}, id="missing-userId"),
        pytest.param({"userId": "u"}, id="missing-text"),
        pytest.param({**VALID, "userId": 5}, id="userId-number"),
        pytest.param({**VALID, "userId": "a b"}, id="userId-space"),
        pytest.param({**VALID, "userId": "u" * 129}, id="userId-129"),
        pytest.param({**VALID, "text": "a" * 4001}, id="text-4001"),
        pytest.param({**VALID, "text": ""}, id="text-empty"),
        pytest.param({**VALID, "element": "mud"}, id="element-unknown"),
        pytest.param({**VALID, "element": 5}, id="element-number"),
        pytest.param({**VALID, "voice": "yes"}, id="voice-string"),
        pytest.param({**VALID, "sessionId": ""}, id="sessionId-empty"),
        pytest.param({**VALID, "sessionId": "a/b"}, id="sessionId-slash"),
    ],
)
def test_schema_and_api_agree_on_what_is_valid(client, document, body):
    """Trimming and NUL are the API's own extra rules; these cases involve neither."""
    schema_accepts = validator(document, "ChatRequest").is_valid(body)
    assert schema_accepts == (client.post(CHAT, json=body).status_code == 200)


@pytest.mark.parametrize(
    "headers, body",
    [
        pytest.param({}, VALID, id="baseline"),
        pytest.param({"x-experiment-spiralogic": "on"}, VALID, id="spiralogic"),
        pytest.param({"x-experiment-spiralogic": "on"}, {**VALID, "voice": True, "sessionId": "s-1"}, id="voice"),
        pytest.param({}, {"userId": "u", "text": "I feel lost and alone"}, id="no-element"),
    ],
)
def test_real_chat_response_matches_chat_response_schema(client, document, headers, body):
    response = client.post(CHAT, json=body, headers=headers)
    assert response.status_code == 200
    validator(document, "ChatResponse").validate(response.get_json())


@pytest.mark.parametrize(
    "method, path, kwargs, status",
    [
        pytest.param("POST", CHAT, {"data": b"{", "content_type": "application/json"}, 400, id="malformed"),
        pytest.param("POST", CHAT, {"json": {**VALID, "voice": "yes"}}, 400, id="wrong-type"),
        pytest.param("POST", CHAT, {"json": {"userId": "u"}}, 422, id="missing"),
        pytest.param("POST", CHAT, {"json": {**VALID, "element": "mud"}}, 422, id="invalid"),
        pytest.param("POST", CHAT, {"data": b"x" * 70000, "content_type": "application/json"}, 413, id="too-large"),
        pytest.param("POST", CHAT, {"data": b"{}", "content_type": "text/plain"}, 415, id="not-json"),
        pytest.param("GET", CHAT, {}, 405, id="method"),
        pytest.param("GET", "/nope", {}, 404, id="path"),
    ],
)
def test_real_errors_match_error_response_schema(client, document, method, path, kwargs, status):
    response = client.open(path, method=method, **kwargs)
    assert response.status_code == status
    validator(document, "ErrorResponse").validate(response.get_json())


def assert_documented_error(document, path, response):
    """The operation documents the answer's status, and its body is an ErrorResponse."""
    assert str(response.status_code) in document["paths"][path]["post"]["responses"]
    validator(document, "ErrorResponse").validate(response.get_json())


@pytest.mark.parametrize(
    "path, body",
    [
        pytest.param(CHAT, VALID, id="chat"),
        # counted, then refused (a rating of 1 needs its scale) before any turn is looked up
        pytest.param(FEEDBACK, {"userId": "u", "turnId": "00000000-0000-0000-0000-000000000001", "rating": 1}, id="feedback"),
    ],
)
def test_a_rate_limited_answer_is_documented(make_app, document, path, body):
    client = make_app(**{"rate_limits.enabled": True, "rate_limits.per_user": "1/minute"}).test_client()
    client.post(path, json=body)
    response = client.post(path, json=body)
    assert response.status_code == 429
    assert_documented_error(document, path, response)


def test_an_overloaded_chat_answer_is_documented(app, client, document):
    admission = app_state(app).admission
    admission.in_flight = admission.max_in_flight  # this worker is at capacity
    response = client.post(CHAT, json=VALID)
    assert response.status_code == 503
    assert_documented_error(document, CHAT, response)

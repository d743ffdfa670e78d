"""The chat API's input contract: every bad input is a JSON error with a stable
code and the field at fault, and no input a client can send gets a 5xx."""

import io
import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spiralogic.schemas import ChatResponse

CHAT = "/api/oracle/chat"
JSON = {"Content-Type": "application/json"}
VALID = {"userId": "smoke-test", "text": "Help me find clarity", "element": "air"}
FIELDS = {"userId", "text", "element", "voice", "sessionId"}
ELEMENTS = ("air", "earth", "water", "fire", "aether")
DEFAULT_LIMIT = 65536


def assert_error(response, status, code, field):
    """The exact error shape, as JSON, with nothing of the server's insides."""
    raw = response.get_data(as_text=True)
    assert response.status_code == status, raw
    assert response.mimetype == "application/json"
    if response.request.method == "HEAD":  # no body, by definition
        return
    body = json.loads(raw)
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "field"}
    assert (body["error"]["code"], body["error"]["field"]) == (code, field)
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert "Traceback" not in raw and 'File "' not in raw


def assert_answered(response):
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["data"]["message"].strip()


def post_raw(client, body: bytes, content_type="application/json"):
    headers = {"Content-Type": content_type} if content_type else {}
    return client.post(CHAT, data=body, headers=headers)


def without(key):
    return {name: value for name, value in VALID.items() if name != key}


def padded_body(size: int) -> bytes:
    """A valid chat body of exactly ``size`` bytes (an ignored key carries the padding)."""
    empty = json.dumps({**VALID, "pad": ""}).encode()
    return json.dumps({**VALID, "pad": "x" * (size - len(empty))}).encode()


# -- The body is not a JSON object -------------------------------------------


@pytest.mark.parametrize(
    "body, status, code, field",
    [
        pytest.param(b'{"userId": "u",', 400, "malformed_json", None, id="truncated"),
        pytest.param(b"{'userId': 'u'}", 400, "malformed_json", None, id="single-quotes"),
        pytest.param(b"", 400, "malformed_json", None, id="empty-body"),
        pytest.param(b"   ", 400, "malformed_json", None, id="whitespace-body"),
        pytest.param(b'{"userId": "u", "text": "a"} trailing', 400, "malformed_json", None, id="trailing-garbage"),
        pytest.param(b'{"userId": "u", "text": "a", "x": NaN}', 400, "malformed_json", None, id="nan"),
        pytest.param(b'{"userId": "u", "text": "a", "x": -Infinity}', 400, "malformed_json", None, id="infinity"),
        pytest.param(b'{"userId": "u", "text": "a", "x": ' + b"9" * 5000 + b"}", 400, "malformed_json", None, id="huge-integer"),
        pytest.param(b"[" * 60000, 400, "malformed_json", None, id="deeply-nested-arrays"),
        pytest.param(b'{"a":' * 12000, 400, "malformed_json", None, id="deeply-nested-objects"),
        pytest.param(b"[" * 2000 + b"]" * 2000, 400, "malformed_json", None, id="deep-but-well-formed"),
        pytest.param(b"[]", 400, "invalid_type", None, id="array"),
        pytest.param(b'[{"userId": "u", "text": "a"}]', 400, "invalid_type", None, id="array-of-object"),
        pytest.param(b'"Help me"', 400, "invalid_type", None, id="string"),
        pytest.param(b"42", 400, "invalid_type", None, id="number"),
        pytest.param(b"null", 400, "invalid_type", None, id="null"),
        pytest.param(b"true", 400, "invalid_type", None, id="boolean"),
        pytest.param(b'{"userId": "u", "text": "a", "text": "b"}', 400, "duplicate_key", "text", id="duplicate-key"),
        pytest.param(b'{"userId": "u", "text": "caf\xe9"}', 400, "invalid_encoding", None, id="latin-1-byte"),
        pytest.param(b'{"userId": "u", "text": "\xff\xfe\xfd"}', 400, "invalid_encoding", None, id="invalid-utf8"),
        pytest.param(b'{"userId": "u", "text": "\xed\xa0\x80"}', 400, "invalid_encoding", None, id="utf8-encoded-surrogate"),
        pytest.param(json.dumps(VALID).encode("utf-16"), 400, "invalid_encoding", None, id="utf-16"),
        pytest.param(b'{"userId": "u", "text": "hi \\ud800 there"}', 422, "invalid_value", "text", id="lone-surrogate-text"),
        pytest.param(b'{"userId": "\\udfff", "text": "hi"}', 422, "invalid_value", "userId", id="lone-surrogate-userId"),
    ],
)
def test_body_that_is_not_a_usable_json_object(client, body, status, code, field):
    assert_error(post_raw(client, body), status, code, field)


def test_hundred_thousand_brackets_are_a_400_when_the_limit_allows_them(make_app):
    client = make_app(max_request_bytes=200_000).test_client()
    assert_error(post_raw(client, b"[" * 100_000), 400, "malformed_json", None)
    assert_error(post_raw(client, b"[" * 100_000 + b"]" * 100_000), 400, "malformed_json", None)


def test_utf8_byte_order_mark_is_tolerated(client):
    assert_answered(post_raw(client, b"\xef\xbb\xbf" + json.dumps(VALID).encode()))


# -- Fields: wrong JSON type (400), missing or invalid value (422) -----------


@pytest.mark.parametrize(
    "body, status, code, field",
    [
        pytest.param({**VALID, "userId": 12345}, 400, "invalid_type", "userId", id="userId-number"),
        pytest.param({**VALID, "userId": None}, 400, "invalid_type", "userId", id="userId-null"),
        pytest.param({**VALID, "userId": ["smoke-test"]}, 400, "invalid_type", "userId", id="userId-list"),
        pytest.param({**VALID, "text": ["Help", "me"]}, 400, "invalid_type", "text", id="text-list"),
        pytest.param({**VALID, "text": {"value": "Help"}}, 400, "invalid_type", "text", id="text-object"),
        pytest.param({**VALID, "text": 7}, 400, "invalid_type", "text", id="text-number"),
        pytest.param({**VALID, "voice": "yes"}, 400, "invalid_type", "voice", id="voice-yes"),
        pytest.param({**VALID, "voice": "true"}, 400, "invalid_type", "voice", id="voice-string-true"),
        pytest.param({**VALID, "voice": 1}, 400, "invalid_type", "voice", id="voice-one"),
        pytest.param({**VALID, "voice": None}, 400, "invalid_type", "voice", id="voice-null"),
        pytest.param({**VALID, "element": 5}, 400, "invalid_type", "element", id="element-number"),
        pytest.param({**VALID, "element": ["air"]}, 400, "invalid_type", "element", id="element-list"),
        pytest.param({**VALID, "element": True}, 400, "invalid_type", "element", id="element-bool"),
        pytest.param({**VALID, "sessionId": 42}, 400, "invalid_type", "sessionId", id="sessionId-number"),
        pytest.param(without("userId"), 422, "missing_field", "userId", id="missing-userId"),
        pytest.param(without("text"), 422, "missing_field", "text", id="missing-text"),
        pytest.param({}, 422, "missing_field", "userId", id="empty-object"),
        pytest.param({**VALID, "text": ""}, 422, "invalid_value", "text", id="text-empty"),
        pytest.param({**VALID, "text": " \t\n\u3000 "}, 422, "invalid_value", "text", id="text-whitespace-only"),
        pytest.param({**VALID, "text": "  " + "a" * 4001 + "\n"}, 422, "invalid_value", "text", id="text-4001-after-trim"),
        pytest.param({**VALID, "text": "a" * 4001}, 422, "invalid_value", "text", id="text-4001"),
        pytest.param({**VALID, "text": "before\x00after"}, 422, "invalid_value", "text", id="text-nul"),
        pytest.param({**VALID, "userId": ""}, 422, "invalid_value", "userId", id="userId-empty"),
        pytest.param({**VALID, "userId": "smoke test"}, 422, "invalid_value", "userId", id="userId-space"),
        pytest.param({**VALID, "userId": " smoke-test "}, 422, "invalid_value", "userId", id="userId-surrounding-spaces"),
        pytest.param({**VALID, "userId": "smoke/test"}, 422, "invalid_value", "userId", id="userId-slash"),
        pytest.param({**VALID, "userId": "u" * 129}, 422, "invalid_value", "userId", id="userId-129"),
        pytest.param({**VALID, "userId": "smoke\ntest"}, 422, "invalid_value", "userId", id="userId-newline"),
        pytest.param({**VALID, "userId": "smoke-test\n"}, 422, "invalid_value", "userId", id="userId-trailing-newline"),
        pytest.param({**VALID, "userId": "usér"}, 422, "invalid_value", "userId", id="userId-non-ascii"),
        pytest.param({**VALID, "element": "mud"}, 422, "invalid_value", "element", id="element-unknown"),
        pytest.param({**VALID, "element": "Air"}, 422, "invalid_value", "element", id="element-wrong-case"),
        pytest.param({**VALID, "element": ""}, 422, "invalid_value", "element", id="element-empty"),
        pytest.param({**VALID, "sessionId": ""}, 422, "invalid_value", "sessionId", id="sessionId-empty"),
        pytest.param({**VALID, "sessionId": "a b"}, 422, "invalid_value", "sessionId", id="sessionId-space"),
        pytest.param({**VALID, "sessionId": "../etc/passwd"}, 422, "invalid_value", "sessionId", id="sessionId-path"),
        pytest.param({**VALID, "sessionId": "s" * 129}, 422, "invalid_value", "sessionId", id="sessionId-129"),
    ],
)
def test_invalid_fields(client, body, status, code, field):
    assert_error(client.post(CHAT, json=body), status, code, field)


@pytest.mark.parametrize(
    "override",
    [
        pytest.param({"text": "  " + "a" * 4000 + "\n\t"}, id="text-4000-after-trim"),
        pytest.param({"text": "x"}, id="text-one-char"),
        pytest.param({"text": "\u200f\u202bשלום, מה שלומך?\u202c \u200eok"}, id="rtl-marks"),
        pytest.param({"text": "😀" * 4000}, id="4000-emoji"),
        pytest.param({"text": "👩🏽‍🚀 e\u0301 ∑ 漢字 {0} %s $focus ${x} <script>"}, id="mixed-unicode-and-format-strings"),
        pytest.param({"userId": "U" * 128}, id="userId-128"),
        pytest.param({"userId": "a.b_c:d@e-f9"}, id="userId-every-allowed-symbol"),
        pytest.param({"element": None}, id="element-null"),
        pytest.param({"voice": True}, id="voice-true"),
        pytest.param({"voice": False}, id="voice-false"),
        pytest.param({"sessionId": "session-1:a@b.c"}, id="sessionId"),
        pytest.param({"sessionId": None}, id="sessionId-null"),
        pytest.param({"unknown": {"nested": [1, 2, None]}, "x": "\ud800"}, id="unknown-keys-ignored"),
        *(pytest.param({"element": element}, id=f"element-{element}") for element in ELEMENTS),
    ],
)
def test_valid_requests_are_answered(client, override):
    assert_answered(client.post(CHAT, json={**VALID, **override}))


# -- Size and media type ------------------------------------------------------


def test_body_at_the_size_limit_is_accepted_and_one_byte_more_is_413(client):
    assert_answered(post_raw(client, padded_body(DEFAULT_LIMIT)))
    assert_error(post_raw(client, padded_body(DEFAULT_LIMIT + 1)), 413, "body_too_large", None)


def test_size_limit_comes_from_settings(make_app):
    client = make_app(max_request_bytes=2048).test_client()
    assert_answered(post_raw(client, padded_body(2048)))
    assert_error(post_raw(client, padded_body(2049)), 413, "body_too_large", None)


def post_chunked(client, body: bytes):
    """As a WSGI server passes a chunked body: no Content-Length, the stream ends itself."""
    return client.post(CHAT, input_stream=io.BytesIO(body), content_type="application/json", environ_overrides={"wsgi.input_terminated": True})


def test_chunked_body_over_the_limit_is_413_not_a_truncated_parse(client):
    assert_answered(post_chunked(client, padded_body(DEFAULT_LIMIT)))
    # cut at the limit, this one would be a valid request: the rest must still count
    assert_error(post_chunked(client, json.dumps(VALID).encode() + b" " * DEFAULT_LIMIT), 413, "body_too_large", None)
    assert_error(post_chunked(client, padded_body(DEFAULT_LIMIT + 1)), 413, "body_too_large", None)


def test_huge_body_is_413_even_when_it_is_not_json(client):
    assert_error(post_raw(client, b"[" * 1_000_000), 413, "body_too_large", None)


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("text/plain", id="text-plain"),
        pytest.param("text/plain; charset=utf-8", id="text-plain-charset"),
        pytest.param(None, id="missing"),
        pytest.param("application/x-www-form-urlencoded", id="form"),
        pytest.param("multipart/form-data; boundary=x", id="multipart"),
        pytest.param("application/jsonp", id="jsonp"),
    ],
)
def test_non_json_content_type_is_415(client, content_type):
    assert_error(post_raw(client, json.dumps(VALID).encode(), content_type), 415, "unsupported_media_type", None)


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON; charset=UTF-8"])
def test_json_content_types_are_accepted(client, content_type):
    assert_answered(post_raw(client, json.dumps(VALID).encode(), content_type))


@pytest.mark.parametrize(
    "body, status, code, field",
    [
        pytest.param(b"{", 400, "malformed_json", None, id="malformed"),
        pytest.param(json.dumps(without("text")).encode(), 422, "missing_field", "text", id="missing-text"),
        pytest.param(json.dumps({**VALID, "voice": "yes"}).encode(), 400, "invalid_type", "voice", id="wrong-type"),
    ],
)
def test_a_client_asking_for_a_stream_still_gets_json_errors(client, body, status, code, field):
    response = client.post(CHAT, data=body, headers={**JSON, "Accept": "text/event-stream"})
    assert_error(response, status, code, field)


# -- Routing: wrong method, unknown path --------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "HEAD"])
def test_other_methods_on_chat_are_405_with_allow(client, method):
    response = client.open(CHAT, method=method, json=VALID)
    assert_error(response, 405, "method_not_allowed", None)
    assert "POST" in {name.strip() for name in response.headers["Allow"].split(",")}


@pytest.mark.parametrize("path", ["/nope", "/api/oracle/chat/", "/api/oracle", "/API/oracle/chat", "/api/oracle/chat/x%00y"])
def test_unknown_paths_are_404(client, path):
    assert_error(client.post(path, json=VALID), 404, "not_found", None)
    assert_error(client.get(path), 404, "not_found", None)


def test_an_unexpected_server_error_is_a_json_500_without_internals(make_app):
    app = make_app()

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internal detail")

    response = app.test_client().get("/boom")
    assert_error(response, 500, "internal_error", None)
    assert "secret internal detail" not in response.get_data(as_text=True)


# -- Property: arbitrary input never gets a 5xx --------------------------------

IDENTIFIER = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
# Trimming is Unicode White_Space; Python's isspace() also counts the ASCII separators 0x1c-0x1f.
WHITESPACE = "".join(c for c in map(chr, range(0x3001)) if c.isspace() and c not in "\x1c\x1d\x1e\x1f")
SURROGATE = re.compile("[\ud800-\udfff]")
CHARACTERS = st.characters(exclude_categories=()) | st.sampled_from(["\x00", "\ud800", "\udfff", "\u200f", "\u202e", "😀", " ", "\t", "\x1f"])
TEXT = st.text(CHARACTERS, max_size=40)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=12,
)
IDENTIFIERS = st.from_regex(IDENTIFIER, fullmatch=True)
LONG_TEXT = st.builds(lambda pad, char, n: pad + char * n + pad, st.sampled_from(["", " ", "\n\t "]), CHARACTERS, st.integers(3995, 4005))
FIELD_VALUES = {
    "userId": IDENTIFIERS | TEXT | JSON_VALUES,
    "text": TEXT | LONG_TEXT | JSON_VALUES,
    "element": st.sampled_from([*ELEMENTS, None]) | TEXT | JSON_VALUES,
    "voice": st.booleans() | JSON_VALUES,
    "sessionId": IDENTIFIERS | st.none() | JSON_VALUES,
}
CHAT_OBJECTS = st.builds(
    lambda extra, known: {**extra, **known},
    st.dictionaries(TEXT, JSON_VALUES, max_size=3),
    st.fixed_dictionaries({}, optional=FIELD_VALUES),
)
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _identifier(value) -> bool:
    return isinstance(value, str) and IDENTIFIER.fullmatch(value) is not None


def _message(value) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value.strip(WHITESPACE)) <= 4000
        and "\x00" not in value
        and not SURROGATE.search(value)
    )


def contract_accepts(body) -> bool:
    """The spec's rules, written independently of the pydantic model."""
    return (
        isinstance(body, dict)
        and _identifier(body.get("userId"))
        and _message(body.get("text"))
        and (body.get("element") is None or body.get("element") in ELEMENTS)
        and isinstance(body.get("voice", False), bool)
        and (body.get("sessionId") is None or _identifier(body["sessionId"]))
    )


def assert_well_formed_error(response):
    raw = response.get_data(as_text=True)
    assert response.status_code < 500, raw
    assert response.mimetype == "application/json"
    error = json.loads(raw)["error"]
    assert set(json.loads(raw)) == {"error"} and set(error) == {"code", "message", "field"}
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in raw
    return error


@PROPERTY
@given(body=CHAT_OBJECTS | JSON_VALUES)
def test_any_json_value_gets_the_contract_answer(client, body):
    response = client.post(CHAT, data=json.dumps(body), headers=JSON)
    if contract_accepts(body):
        assert response.status_code == 200, response.get_data(as_text=True)
        ChatResponse.model_validate(response.get_json())
        return
    error = assert_well_formed_error(response)
    expected_codes = {400: {"invalid_type"}, 422: {"invalid_value", "missing_field"}}
    assert error["code"] in expected_codes.get(response.status_code, set()), (response.status_code, error)
    assert error["field"] is None if not isinstance(body, dict) else error["field"] in FIELDS


@PROPERTY
@given(
    body=st.binary(max_size=300)
    | st.builds(lambda raw, cut: raw[:cut], st.just(json.dumps(VALID).encode()), st.integers(0, 80))
    | st.builds(lambda text: json.dumps({**VALID, "text": text}, ensure_ascii=False).encode("utf-8", "surrogatepass"), TEXT),
    content_type=st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain", None]),
)
def test_any_bytes_never_get_a_5xx(client, body, content_type):
    response = post_raw(client, body, content_type)
    if response.status_code != 200:
        assert_well_formed_error(response)

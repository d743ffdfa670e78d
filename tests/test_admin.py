"""GET /admin/status: hidden without a token, 401 on any wrong or malformed one, no secrets in it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from tcp_proxy import postgresql_only

from spiralogic.flags import DEFAULTS
from spiralogic.state import app_state

TOKEN = "s3cret"
PASSWORD = "pg-pa55word"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def with_password(database_url: str) -> str:
    """The same database, reached with a password (the test server trusts any)."""
    if not database_url.startswith("postgresql"):
        return database_url
    return database_url.replace("postgres@", f"postgres:{PASSWORD}@", 1)


@pytest.fixture
def admin_app(make_app, database_url):
    return make_app(with_password(database_url), admin_token=TOKEN)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_hidden_without_a_configured_token(make_app, database_url):
    client = make_app(database_url).test_client()
    for headers in ({}, bearer(), bearer("")):
        response = client.get("/admin/status", headers=headers)
        assert response.status_code == 404
        assert response.get_json()["error"]["code"] == "not_found"


def test_a_wrong_token_is_401_with_a_bearer_challenge(admin_app):
    response = admin_app.test_client().get("/admin/status", headers=bearer("s3cret-not"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert TOKEN not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        " ",
        "Bearer",
        "Bearer ",
        TOKEN,  # no scheme
        f"Basic {TOKEN}",
        "Basic czNjcmV0OnM=",
        f"Token {TOKEN}",
        f"Bearer  {TOKEN}",
        f"Bearer {TOKEN} extra",
        f"Bearer {TOKEN[:-1]}",
        "Bearer s3cr\u00e9t",  # latin-1
        "Bearer " + "s3créţ".encode().decode("latin-1"),  # raw UTF-8 bytes, as WSGI hands them on
        "Bearer \xff\xfe\x00",
    ],
)
def test_malformed_authorization_is_401_not_500(admin_app, authorization):
    environ = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}
    response = admin_app.test_client().get("/admin/status", environ_overrides=environ)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"]["code"] == "unauthorized"


def test_the_scheme_is_case_insensitive(admin_app):
    response = admin_app.test_client().get("/admin/status", headers={"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200


def test_status_reports_mode_flags_and_transitions(admin_app):
    state = app_state(admin_app)
    client = admin_app.test_client()
    body = client.get("/admin/status", headers=bearer()).get_json()
    assert body["mode"] == {"current": "full", "reason": "initial", "since": None}
    assert body["flags"] == {**DEFAULTS}
    assert body["transitions"] == []

    state.modes.transition("lite", "first tokens slow", actor="controller", now=T0)
    state.flags.set("lite_by_default", True, actor="ops", reason="latency spike", now=T0)
    response = client.get("/admin/status", headers=bearer())
    assert response.status_code == 200
    body = response.get_json()
    assert body["mode"] == {"current": "lite", "reason": "first tokens slow", "since": T0.isoformat()}
    assert body["flags"]["lite_by_default"] is True
    [row] = body["transitions"]
    assert (row["from_mode"], row["to_mode"], row["reason"], row["actor"]) == ("full", "lite", "first tokens slow", "controller")
    assert datetime.fromisoformat(row["at"]) == T0
    assert row["at"] == T0.isoformat()  # with its offset, on SQLite too


def test_status_shows_the_workers_counts_and_the_hosts_journals(admin_app):
    state = app_state(admin_app)
    state.ratings.journal.append([{"id": "a queued rating"}])
    state.ratings.journal.reject([{"id": "a rating that failed its checks"}], "turn_not_found")
    body = admin_app.test_client().get("/admin/status", headers=bearer()).get_json()
    assert body["journals"] == {"telemetry": {"pending": 0, "rejected": 0}, "feedback": {"pending": 1, "rejected": 1}}
    assert body["feedback"] == state.ratings.counts and body["telemetry"] == state.telemetry.counts


@pytest.mark.postgres
@postgresql_only
def test_status_answers_while_the_database_is_away(make_app, database_url, proxy):
    app = make_app(proxy.url_for(database_url), admin_token=TOKEN)
    app_state(app).ratings.journal.append([{"id": "a queued rating"}])
    proxy.cut()
    response = app.test_client().get("/admin/status", headers=bearer())
    assert response.status_code == 200
    body = response.get_json()
    assert (body["mode"], body["flags"], body["transitions"]) == (None, None, None)
    assert body["journals"]["feedback"]["pending"] == 1 and body["worker"]["pid"]


def test_status_leaks_no_secret(admin_app):
    state = app_state(admin_app)
    state.modes.transition("fallback", "provider errors", actor="controller", now=T0)
    text = admin_app.test_client().get("/admin/status", headers=bearer()).get_data(as_text=True)
    assert TOKEN not in text
    assert PASSWORD not in text
    assert "sqlite:" not in text and "postgresql" not in text  # nor the database URL

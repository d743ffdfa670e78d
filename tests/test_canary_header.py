"""The canary header (x-experiment-spiralogic) is honoured for staff only when so configured."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from spiralogic.state import app_state
from spiralogic.tables import ConsciousnessTurnMeta

STAFF_KEY = "k3y-for-staff-only"
STAFF_ONLY = {"canary.header_allowed": "staff", "canary.staff_keys": [STAFF_KEY], "canary.staff_networks": ["10.20.0.0/16"]}
PUBLIC_ADDRESS = "203.0.113.7"
TURNS = ConsciousnessTurnMeta.__table__


def chat(client, headers=None, address: str = PUBLIC_ADDRESS):
    body = {"userId": "canary-user", "text": "Help me find clarity", "element": "air"}
    headers = {"x-experiment-spiralogic": "on", **(headers or {})}
    return client.post("/api/oracle/chat", json=body, headers=headers, environ_base={"REMOTE_ADDR": address})


def route_of(app, turn_id: str) -> str:
    state = app_state(app)
    state.telemetry.flush()
    with state.engine.connect() as conn:
        metadata = conn.execute(sa.select(TURNS.c.metadata).where(TURNS.c.id == uuid.UUID(turn_id))).scalar_one()
    return metadata["route"]


@pytest.fixture
def staff_app(make_app):
    return make_app(**STAFF_ONLY)


def test_the_public_header_is_ignored_and_the_route_says_so(staff_app):
    response = chat(staff_app.test_client())
    assert response.status_code == 200
    assert response.headers["x-orchestrator"] == "baseline"
    assert route_of(staff_app, response.get_json()["data"]["turnId"]) == "header_ignored"


def test_a_wrong_staff_key_is_ignored_without_an_error(staff_app):
    response = chat(staff_app.test_client(), headers={"x-staff-key": "k3y-for-staff-onlx"})
    assert response.status_code == 200
    assert response.headers["x-orchestrator"] == "baseline"
    assert route_of(staff_app, response.get_json()["data"]["turnId"]) == "header_ignored"


def test_a_valid_staff_key_is_honoured(staff_app):
    response = chat(staff_app.test_client(), headers={"x-staff-key": STAFF_KEY})
    assert response.headers["x-orchestrator"] == "spiralogic"
    assert route_of(staff_app, response.get_json()["data"]["turnId"]) == "header_on"


def test_a_staff_network_is_honoured(staff_app):
    response = chat(staff_app.test_client(), address="10.20.3.4")
    assert response.headers["x-orchestrator"] == "spiralogic"
    assert route_of(staff_app, response.get_json()["data"]["turnId"]) == "header_on"


def test_a_staff_network_behind_a_trusted_proxy(make_app):
    app = make_app(**STAFF_ONLY, **{"rate_limits.trusted_proxies": 1})
    client = app.test_client()
    assert chat(client, headers={"X-Forwarded-For": "10.20.3.4"}, address="192.0.2.1").headers["x-orchestrator"] == "spiralogic"
    assert chat(client, headers={"X-Forwarded-For": "198.51.100.1"}, address="10.20.3.4").headers["x-orchestrator"] == "baseline"


def test_anyone_mode_honours_everyone(make_app):
    app = make_app(**{"canary.header_allowed": "anyone"})
    response = chat(app.test_client())
    assert response.headers["x-orchestrator"] == "spiralogic"
    assert route_of(app, response.get_json()["data"]["turnId"]) == "header_on"


def test_no_header_routes_as_usual_in_staff_mode(staff_app):
    body = {"userId": "canary-user", "text": "Help me find clarity", "element": "air"}
    response = staff_app.test_client().post("/api/oracle/chat", json=body)
    assert route_of(staff_app, response.get_json()["data"]["turnId"]) == "default"


def test_production_admits_only_staff(monkeypatch):
    from spiralogic.settings import load_settings

    monkeypatch.setenv("SPIRALOGIC_ENV", "production")
    assert load_settings().canary.header_allowed == "staff"

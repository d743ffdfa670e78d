"""Rollout moves: promotion gated on the playbook's gates, abort and retry, audit, admin API."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from spiralogic.cli import cli
from spiralogic.rollout import Move, RolloutRefused
from spiralogic.state import app_state
from spiralogic.tables import ConsciousnessTurnMeta

NOW = datetime(2026, 11, 25, 14, 0, tzinfo=timezone.utc)
TOKEN = "rollout-token"


def healthy_hour(engine, end: datetime) -> None:
    """An hour of good spiralogic turns (and a baseline control cohort) ending at ``end``."""
    rng = random.Random(7)
    rows = []
    for second in range(3600):
        orchestrator = "baseline" if second % 60 == 0 else "spiralogic"
        rows.append(
            {
                "id": uuid.uuid4(), "user_id": f"u{second % 97}", "orchestrator": orchestrator, "orchestrator_mode": "full",
                "created_at": end - timedelta(seconds=3600 - second - 1),
                "metadata": {"latencyMs": rng.randint(120, 300), "firstTokenMs": rng.randint(40, 200), "qualityScore": 0.8},
                "resonance": {"cache_hit": True} if second % 4 else {},
            }
        )
    with engine.begin() as conn:
        conn.execute(sa.insert(ConsciousnessTurnMeta.__table__), rows)


def move(reason="test", now=NOW) -> Move:
    return Move("operator:test", reason, now)


def test_promotion_is_refused_until_the_gates_hold(make_app, database_url):
    app = make_app(database_url)
    control = app_state(app).rollout
    with pytest.raises(RolloutRefused) as refused:
        control.promote(move())
    assert any("candidate turns" in reason for reason in refused.value.reasons)
    healthy_hour(app_state(app).engine, NOW)
    assert control.promote(move()) == "canary"
    assert control.promote(move()) == "beta"
    assert control.status()["percent"] == 10  # beta starts its cohort
    assert control.promote(move()) == "ga"
    with pytest.raises(RolloutRefused):
        control.promote(move())


def test_force_promotes_and_says_so_in_the_audit(make_app):
    app = make_app()
    control = app_state(app).rollout
    control.promote(move("staff sign-off"), force=True)
    history = control.status()["history"]
    assert history[-1]["key"] == "phase" and history[-1]["value"] == "canary"
    assert history[-1]["reason"] == "forced: staff sign-off" and history[-1]["actor"] == "operator:test"


def test_abort_latches_until_retry_returns_to_the_phase_before(make_app):
    app = make_app()
    control = app_state(app).rollout
    control.promote(move(), force=True)
    control.promote(move(), force=True)
    control.abort(move("errors"))
    with pytest.raises(RolloutRefused):
        control.promote(move(), force=True)
    assert control.retry(move("fixed")) == "beta"
    with pytest.raises(RolloutRefused):
        control.retry(move())


def test_the_cli_moves_the_rollout(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("SPIRALOGIC_DATA_DIR", str(tmp_path / "cli"))
    from spiralogic.migrate import upgrade
    from spiralogic.settings import database_url as url_of
    from spiralogic.settings import load_settings

    upgrade(url_of(load_settings()))
    refused = runner.invoke(cli, ["rollout", "promote", "--reason", "try"])
    assert refused.exit_code == 1 and "refused" in refused.output
    assert runner.invoke(cli, ["rollout", "promote", "--force", "--reason", "go"]).exit_code == 0
    assert runner.invoke(cli, ["rollout", "set-percent", "25", "--reason", "more"]).exit_code == 0
    assert runner.invoke(cli, ["rollout", "kill", "--reason", "incident"]).exit_code == 0
    status = runner.invoke(cli, ["rollout", "status"])
    assert "phase: canary, percent: 25, kill switch: True" in status.output
    assert "by operator:" in status.output


def test_the_admin_api_moves_the_rollout(make_app):
    app = make_app(admin_token=TOKEN)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/admin/rollout/promote", json={"reason": "x"}).status_code == 401
    refused = client.post("/admin/rollout/promote", json={"reason": "try"}, headers=auth)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "rollout_refused"
    forced = client.post("/admin/rollout/promote", json={"reason": "go", "force": True}, headers=auth)
    assert forced.status_code == 200 and forced.get_json()["phase"] == "canary"
    assert client.post("/admin/rollout/percent", json={"reason": "r"}, headers=auth).status_code == 422
    assert client.post("/admin/rollout/percent", json={"reason": "r", "percent": 20}, headers=auth).get_json()["percent"] == 20
    assert client.post("/admin/rollout/launch", json={"reason": "r"}, headers=auth).status_code == 404
    status = client.get("/admin/rollout", headers=auth).get_json()
    assert status["history"][0]["actor"] == "api:admin-api"

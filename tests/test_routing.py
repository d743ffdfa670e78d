"""Routing precedence and sticky, monotonic cohort bucketing."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import sqlalchemy as sa

from spiralogic.routing import Rollout, choose_route, cohort_bucket, in_cohort
from spiralogic.state import app_state

# Unleash's published gradual-rollout vectors (murmur3, seed 0, "group:userId").
UNLEASH_VECTORS = [("Feature.flexibleRollout.10", "174", 10), ("Feature.flexibleRollout.10", "499", 32)]


@pytest.mark.parametrize("group, user, bucket", UNLEASH_VECTORS)
def test_buckets_match_unleash(group, user, bucket):
    assert cohort_bucket(group, user) == bucket


def test_raising_the_percent_keeps_everyone_who_was_in():
    users = [f"user-{i}" for i in range(5000)]
    at_5 = {u for u in users if in_cohort("spiralogic", u, 5)}
    at_30 = {u for u in users if in_cohort("spiralogic", u, 30)}
    assert at_5 <= at_30
    assert 0.03 < len(at_5) / len(users) < 0.07
    assert 0.27 < len(at_30) / len(users) < 0.33


def test_zero_percent_is_nobody_and_hundred_is_everybody():
    users = [f"u{i}" for i in range(500)]
    assert not any(in_cohort("g", u, 0) for u in users)
    assert all(in_cohort("g", u, 100) for u in users)


INSIDE = "user-in"  # a user inside a 50% cohort of group "g"


def test_the_sample_user_is_inside_a_half_cohort():
    assert in_cohort("g", INSIDE, 50)


@pytest.mark.parametrize(
    "header, orchestrator, rollout, expected",
    [
        ("on", "baseline", Rollout(kill_switch=True), ("baseline", "kill_switch")),
        ("on", "baseline", Rollout(readable=False), ("baseline", "rollout_unreadable")),
        ("on", "baseline", Rollout(), ("spiralogic", "header_on")),
        ("off", "spiralogic", Rollout(phase="ga"), ("baseline", "header_off")),
        ("on", "baseline", Rollout(phase="aborted"), ("spiralogic", "header_on")),
        (None, "spiralogic", Rollout(phase="aborted"), ("baseline", "aborted")),
        (None, "spiralogic", Rollout(), ("spiralogic", "ga")),
        (None, "baseline", Rollout(phase="ga"), ("spiralogic", "ga")),
        (None, "baseline", Rollout(phase="beta", percent=50), ("spiralogic", "cohort")),
        (None, "baseline", Rollout(phase="beta", percent=0), ("baseline", "default")),
        ("maybe", "baseline", Rollout(), ("baseline", "default")),
    ],
)
def test_precedence(header, orchestrator, rollout, expected):
    route = choose_route(header, INSIDE, orchestrator=orchestrator, rollout=rollout, group="g")
    assert (route.orchestrator, route.reason) == expected


def set_flag(app, key, value):
    app_state(app).flags.set(key, value, actor="test", reason="test", now=datetime.now(timezone.utc))


def test_the_kill_switch_beats_the_header_across_the_app(make_app):
    app = make_app()
    client = app.test_client()
    body = {"userId": "k", "text": "Help me find clarity", "element": "air"}
    set_flag(app, "kill_switch", True)
    assert client.post("/api/oracle/chat", json=body, headers={"x-experiment-spiralogic": "on"}).headers["x-orchestrator"] == "baseline"
    set_flag(app, "kill_switch", False)
    assert client.post("/api/oracle/chat", json=body, headers={"x-experiment-spiralogic": "on"}).headers["x-orchestrator"] == "spiralogic"


def test_runtime_percent_overrides_the_setting(make_app):
    app = make_app(**{"rollout.percent": 0})
    client = app.test_client()
    set_flag(app, "percent", 100)
    body = {"userId": "p", "text": "Help me find clarity", "element": "air"}
    response = client.post("/api/oracle/chat", json=body)
    assert response.headers["x-orchestrator"] == "spiralogic"


def test_unreadable_rollout_state_routes_to_baseline(make_app, tmp_path):
    app = make_app()
    state = app_state(app)
    state.flags.engine = sa.create_engine(f"sqlite:///{tmp_path / 'missing' / 'nope.db'}")
    state.flags.ttl = 0
    body = {"userId": "r", "text": "Help me find clarity", "element": "air"}
    response = app.test_client().post("/api/oracle/chat", json=body, headers={"x-experiment-spiralogic": "on"})
    assert response.status_code == 200
    assert response.headers["x-orchestrator"] == "baseline"

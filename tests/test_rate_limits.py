"""Rate limits per user and per client address on chat and feedback (flask-limiter)."""

from __future__ import annotations

import uuid

import pytest
import redis

REDIS_DB_URL = "redis://127.0.0.1:6379/13"
#: nothing listens on port 1: the limits' storage is down
REDIS_DOWN_URL = "redis://127.0.0.1:1/0"


def limited(per_user: str = "100/minute", per_address: str = "100/minute", **overrides):
    return {"rate_limits.enabled": True, "rate_limits.per_user": per_user, "rate_limits.per_address": per_address, **overrides}


def chat(client, user: str, address: str = "203.0.113.7", headers=None):
    body = {"userId": user, "text": "Help me find clarity", "element": "air"}
    return client.post("/api/oracle/chat", json=body, headers=headers or {}, environ_base={"REMOTE_ADDR": address})


def assert_rate_limited(response) -> None:
    assert response.status_code == 429
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited" and error["message"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60


@pytest.fixture
def redis_db():
    """Redis database 13, empty before and after the test."""
    client = redis.Redis.from_url(REDIS_DB_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_past_the_user_limit_the_answer_is_429_with_retry_after(make_app):
    client = make_app(**limited(per_user="2/minute")).test_client()
    user = f"u-{uuid.uuid4().hex}"
    assert [chat(client, user).status_code for _ in range(2)] == [200, 200]
    assert_rate_limited(chat(client, user))
    assert chat(client, f"other-{uuid.uuid4().hex}").status_code == 200  # another user is unaffected


def test_past_the_address_limit_every_user_from_it_waits(make_app):
    client = make_app(**limited(per_address="3/minute")).test_client()
    assert [chat(client, f"u{i}").status_code for i in range(3)] == [200, 200, 200]
    assert_rate_limited(chat(client, "u3"))
    assert chat(client, "u3", address="198.51.100.9").status_code == 200


def test_forwarded_for_counts_only_behind_trusted_proxies(make_app):
    direct = make_app(**limited(per_address="1/minute")).test_client()
    assert chat(direct, "a", headers={"X-Forwarded-For": "192.0.2.1"}).status_code == 200
    # Not trusted: a forged X-Forwarded-For does not make a new client.
    assert_rate_limited(chat(direct, "b", headers={"X-Forwarded-For": "192.0.2.2"}))

    proxied = make_app(**limited(per_address="1/minute", **{"rate_limits.trusted_proxies": 1})).test_client()
    assert chat(proxied, "a", address="10.0.0.1", headers={"X-Forwarded-For": "192.0.2.1"}).status_code == 200
    assert chat(proxied, "b", address="10.0.0.1", headers={"X-Forwarded-For": "192.0.2.2"}).status_code == 200
    assert_rate_limited(chat(proxied, "c", address="10.0.0.1", headers={"X-Forwarded-For": "192.0.2.2"}))


def test_feedback_is_limited_per_user(make_app):
    client = make_app(**limited(per_user="1/minute")).test_client()
    body = {"userId": "rater", "turnId": str(uuid.uuid4()), "rating": 5}
    assert client.post("/api/oracle/feedback", json=body).status_code == 404  # counted though the turn is unknown
    assert_rate_limited(client.post("/api/oracle/feedback", json=body))
    assert chat(client, "rater").status_code == 200  # each endpoint is counted apart


def test_an_invalid_body_is_refused_before_it_is_counted(make_app):
    client = make_app(**limited(per_user="1/minute")).test_client()
    assert client.post("/api/oracle/chat", json={"userId": "x"}).status_code == 422
    assert chat(client, "x").status_code == 200


def test_disabled_limits_count_nothing(make_app):
    client = make_app(**limited(per_user="1/minute", **{"rate_limits.enabled": False})).test_client()
    assert [chat(client, "same").status_code for _ in range(3)] == [200, 200, 200]


def test_limits_are_shared_through_redis(make_app, redis_db):
    overrides = limited(per_user="3/minute", cache_redis_url=REDIS_DB_URL)
    first, second = make_app(**overrides).test_client(), make_app(**overrides).test_client()
    user = f"u-{uuid.uuid4().hex}"
    assert [chat(first, user).status_code, chat(second, user).status_code, chat(first, user).status_code] == [200, 200, 200]
    assert_rate_limited(chat(second, user))
    assert redis_db.keys(f"*spiralogic/{user}/*")  # the counters are in Redis, not in either app


def test_requests_are_served_while_the_limits_storage_is_down(make_app):
    client = make_app(**limited(per_user="2/minute", cache_redis_url=REDIS_DOWN_URL)).test_client()
    assert [chat(client, "u").status_code for _ in range(2)] == [200, 200]
    # Each worker keeps counting in memory meanwhile.
    assert_rate_limited(chat(client, "u"))

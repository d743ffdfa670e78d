"""Memoized archetype fusion on both cache backends (in-process and Redis), and its purge."""

from __future__ import annotations

import json
import random
import socket
import time

import pytest
import redis
import sqlalchemy as sa

from spiralogic.cli import cli
from spiralogic.playbook_queries import CACHE_HIT_RATIO
from spiralogic.state import app_state

# Not the database the load harness uses (15): purge counts must see only this test's entries.
REDIS_URL = "redis://127.0.0.1:6379/14"
REDIS_DOWN = "redis://127.0.0.1:1/0"
MEMO_PATTERN = "spiralogic:memo:*"
TOKEN = "s3cret"
CANARY = {"x-experiment-spiralogic": "on"}
K6_CASES = [
    ("Help me find clarity in this decision", "air"),
    ("I feel stuck and need grounding", "earth"),
    ("Guide me through this emotional challenge", "water"),
    ("I need energy to take action", "fire"),
    ("Connect me with deeper wisdom", "aether"),
]
# Generous budgets: a slow CI machine must not push a turn to lite (which skips fusion, hence the cache).
ROOMY = {"soft_budget_ms": 5000, "hard_budget_ms": 10000}


def purge_redis_memo(client: redis.Redis) -> None:
    for key in client.scan_iter(match=MEMO_PATTERN):
        client.delete(key)


@pytest.fixture
def redis_db():
    """A Redis client on the test database, with no memoized entries before or after the test."""
    client = redis.Redis.from_url(REDIS_URL)
    # Serialise test runs sharing this database, or one run's entries would skew another's counts.
    with client.lock("spiralogic-tests:memo", timeout=120, blocking_timeout=120):
        purge_redis_memo(client)
        try:
            yield client
        finally:
            purge_redis_memo(client)
            client.close()


@pytest.fixture(params=["simple", "redis"])
def cache_url(request):
    """The cache backend under test: "" (in-process SimpleCache) or the Redis test database."""
    if request.param == "simple":
        return ""
    request.getfixturevalue("redis_db")
    return REDIS_URL


@pytest.fixture
def memo_app(make_app, cache_url):
    def build(**overrides):
        return make_app(**{"cache_redis_url": cache_url, "admin_token": TOKEN, **ROOMY, **overrides})

    return build


def turn(client, text: str, element: str, user: str = "u1") -> dict:
    response = client.post("/api/oracle/chat", json={"userId": user, "text": text, "element": element}, headers=CANARY)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def hit(client, text: str, element: str, user: str = "u1") -> bool:
    body = turn(client, text, element, user)
    assert body["data"]["mode"] == "full"
    return body["meta"]["cacheHit"]


def clear(client, token: str | None = TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return client.post("/admin/cache/clear", headers=headers)


def resonances(app) -> list[dict]:
    state = app_state(app)
    state.telemetry.flush()
    with state.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT resonance FROM consciousness_turn_meta")).scalars().all()
    return [r if isinstance(r, dict) else json.loads(r) for r in rows]


# -- Hits ----------------------------------------------------------------------------


@pytest.mark.postgres
def test_k6_cases_by_ten_users_hit_the_cache(make_app, database_url, cache_url):
    app = make_app(database_url, cache_redis_url=cache_url, **ROOMY)
    client = app.test_client()
    requests = [(f"k6-user-{user}", text, element) for user in range(1, 11) for text, element in K6_CASES]
    random.Random(7).shuffle(requests)
    hits = [turn(client, text, element, user)["meta"]["cacheHit"] for user, text, element in requests]
    assert sum(hits) / len(hits) >= 0.4
    stored = resonances(app)
    assert len(stored) == len(requests)
    assert sum("cache_hit" in r for r in stored) == sum(hits)
    assert all(r["top"] for r in stored)
    if database_url.startswith("postgresql"):
        with app_state(app).engine.connect() as conn:
            ratios = conn.exec_driver_sql(CACHE_HIT_RATIO).mappings().all()
        assert [float(r["cache_hit_ratio"]) for r in ratios] == [pytest.approx(sum(hits) / len(hits))]


def test_similar_texts_from_different_users_hit(memo_app):
    client = memo_app().test_client()
    first = turn(client, "Help me find clarity in this decision", "air", user="ana")
    second = turn(client, "help me find clarity in this decision!", "air", user="ben")
    assert (first["meta"]["cacheHit"], second["meta"]["cacheHit"]) == (False, True)
    assert second["data"]["archetypes"] == first["data"]["archetypes"]
    assert hit(client, "  HELP me, find clarity in this decision ", "air", user="cy")


def test_other_words_or_another_element_miss(memo_app):
    client = memo_app().test_client()
    assert not hit(client, "Help me find clarity in this decision", "air")
    assert not hit(client, "Help me find clarity in this decision", "fire")
    assert not hit(client, "Help me find no clarity in this decision", "air")
    assert hit(client, "Help me find clarity in this decision", "fire")


def test_statsd_counts_hits_misses_and_backend_errors(make_app, cache_url):
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(2)
    statsd = {"statsd.host": "127.0.0.1", "statsd.port": collector.getsockname()[1], "statsd.prefix": "sl"}
    try:
        client = make_app(cache_redis_url=cache_url, **statsd, **ROOMY).test_client()
        hit(client, "I need energy to take action", "fire")
        hit(client, "I need energy to take action", "fire")
        down = make_app(cache_redis_url=REDIS_DOWN, **statsd, **ROOMY).test_client()
        hit(down, "I need energy to take action", "fire")
        counters = received_counters(collector)
    finally:
        collector.close()
    assert counters["sl.archetype.cache.miss"] == 2
    assert counters["sl.archetype.cache.hit"] == 1
    assert counters["sl.archetype.cache.error"] == 1


def received_counters(sock) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        while True:
            for line in sock.recv(65536).decode().splitlines():
                name, _, rest = line.partition(":")
                value, _, kind = rest.partition("|")
                if kind == "c":
                    counts[name] = counts.get(name, 0) + int(value)
            sock.settimeout(0.3)
    except socket.timeout:
        return counts


# -- Expiry --------------------------------------------------------------------------


def test_entries_expire_after_the_ttl_simple_cache(make_app, monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr("cachelib.simple.time", lambda: now[0])
    client = make_app(archetype_memo_ttl=60, **ROOMY).test_client()
    assert not hit(client, "Connect me with deeper wisdom", "aether")
    now[0] += 59
    assert hit(client, "Connect me with deeper wisdom", "aether")
    now[0] += 2
    assert not hit(client, "Connect me with deeper wisdom", "aether")
    assert hit(client, "Connect me with deeper wisdom", "aether")


def test_entries_expire_after_the_ttl_redis(make_app, redis_db):
    hour = make_app(cache_redis_url=REDIS_URL, archetype_memo_ttl=3600, **ROOMY).test_client()
    assert not hit(hour, "Guide me through this emotional challenge", "water")
    [key] = redis_db.scan_iter(match=MEMO_PATTERN)
    assert 3500 < redis_db.ttl(key) <= 3600
    purge_redis_memo(redis_db)

    second = make_app(cache_redis_url=REDIS_URL, archetype_memo_ttl=1, **ROOMY).test_client()
    assert not hit(second, "Guide me through this emotional challenge", "water")
    deadline = time.monotonic() + 5
    while list(redis_db.scan_iter(match=MEMO_PATTERN)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not hit(second, "Guide me through this emotional challenge", "water")


def test_ttl_zero_switches_memoization_off(memo_app):
    client = memo_app(archetype_memo_ttl=0).test_client()
    assert not any(hit(client, "I feel stuck and need grounding", "earth") for _ in range(3))
    assert clear(client).get_json() == {"dropped": 0}


# -- Purge ---------------------------------------------------------------------------


def test_admin_clear_drops_every_memoized_entry(memo_app):
    app = memo_app()
    client = app.test_client()
    for text, element in K6_CASES[:3]:
        hit(client, text, element)
    assert hit(client, *K6_CASES[0])
    with app.app_context():
        app_state(app).cache.set("not-memoized", "kept")

    response = clear(client)
    assert response.status_code == 200
    assert response.get_json() == {"dropped": 3}
    assert clear(client).get_json() == {"dropped": 0}
    assert not hit(client, *K6_CASES[0])
    assert hit(client, *K6_CASES[0])
    with app.app_context():
        assert app_state(app).cache.get("not-memoized") == "kept"
        app_state(app).cache.delete("not-memoized")


def test_admin_clear_does_not_count_expired_entries(make_app, monkeypatch):
    now = [1_000_000.0]
    monkeypatch.setattr("cachelib.simple.time", lambda: now[0])
    client = make_app(archetype_memo_ttl=60, admin_token=TOKEN, **ROOMY).test_client()
    hit(client, *K6_CASES[0])
    now[0] += 30
    hit(client, *K6_CASES[1])
    now[0] += 31
    assert clear(client).get_json() == {"dropped": 1}


def test_redis_clear_keeps_keys_outside_the_memo_prefix(make_app, redis_db):
    others = ["elsewhere:memo:x", "spiralogic:other", "spiralogic:memo"]
    try:
        redis_db.mset({key: "1" for key in others})
        http = make_app(cache_redis_url=REDIS_URL, admin_token=TOKEN, **ROOMY).test_client()
        hit(http, *K6_CASES[0])
        assert clear(http).get_json() == {"dropped": 1}
        assert redis_db.exists(*others) == len(others)
    finally:
        redis_db.delete(*others)


def test_admin_clear_needs_the_token(make_app, memo_app):
    hidden = make_app().test_client()
    assert clear(hidden).status_code == 404
    assert clear(hidden, token=None).status_code == 404
    guarded = memo_app().test_client()
    hit(guarded, *K6_CASES[0])
    for token in (None, "s3cret-not", ""):
        response = clear(guarded, token)
        assert response.status_code == 401
        assert response.get_json()["error"]["code"] == "unauthorized"
    assert hit(guarded, *K6_CASES[0])
    assert guarded.get("/admin/cache/clear", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405


def test_cli_clear_purges_the_shared_cache(make_app, redis_db, runner, monkeypatch, tmp_path):
    http = make_app(cache_redis_url=REDIS_URL, **ROOMY).test_client()
    for text, element in K6_CASES:
        hit(http, text, element)
    monkeypatch.setenv("CACHE_REDIS_URL", REDIS_URL)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("SPIRALOGIC_DATA_DIR", str(tmp_path / "cli-data"))
    result = runner.invoke(cli, ["cache", "clear"])
    assert result.exit_code == 0, result.output
    assert result.output == f"dropped {len(K6_CASES)} memoized entries\n"
    assert not hit(http, *K6_CASES[0])


def test_cli_clear_without_a_shared_cache_says_why(runner, monkeypatch, tmp_path):
    monkeypatch.delenv("CACHE_REDIS_URL", raising=False)
    monkeypatch.delenv("SPIRALOGIC_CACHE_REDIS_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("SPIRALOGIC_DATA_DIR", str(tmp_path / "cli-data"))
    result = runner.invoke(cli, ["cache", "clear"])
    assert result.exit_code == 1
    assert "CACHE_REDIS_URL" in result.output
    assert "/admin/cache/clear" in result.output


# -- Redis down ----------------------------------------------------------------------


def test_redis_down_never_fails_a_turn(make_app):
    app = make_app(cache_redis_url=REDIS_DOWN, admin_token=TOKEN, **ROOMY)
    client = app.test_client()
    for text, element in K6_CASES * 2:
        body = turn(client, text, element)
        assert body["data"]["mode"] == "full"
        assert body["data"]["archetypes"]
        assert body["meta"]["cacheHit"] is False
    assert all("error" not in r and "cache_hit" not in r and r["top"] for r in resonances(app))
    response = clear(client)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "unavailable"


def test_redis_down_cli_clear_fails_cleanly(runner, monkeypatch, tmp_path):
    monkeypatch.setenv("CACHE_REDIS_URL", REDIS_DOWN)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("SPIRALOGIC_DATA_DIR", str(tmp_path / "cli-data"))
    result = runner.invoke(cli, ["cache", "clear"])
    assert result.exit_code == 1
    assert "cannot reach the cache" in result.output

"""The playbook's pre-flight checks against a real gunicorn server on PostgreSQL."""

from __future__ import annotations

import httpx
import pytest
import sqlalchemy as sa
from live_server import LiveServer

from spiralogic.playbook_queries import PLAYBOOK_QUERIES

pytestmark = pytest.mark.server
SMOKE = {"userId": "smoke-test", "text": "Help me find clarity", "element": "air"}
K6_CASES = [
    ("Help me find clarity in this decision", "air"),
    ("I feel stuck and need grounding", "earth"),
    ("Guide me through this emotional challenge", "water"),
    ("I need energy to take action", "fire"),
    ("Connect me with deeper wisdom", "aether"),
]


@pytest.fixture
def server(database_url, tmp_path):
    with LiveServer(tmp_path, database_url, workers=2) as live:
        yield live


def rows_of(database_url, sql):
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql)).mappings().all()
    finally:
        engine.dispose()


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_canary_smoke_and_monitoring_queries(server, database_url):
    with httpx.Client(base_url=server.url, timeout=10) as http:
        canary = http.post("/api/oracle/chat", json=SMOKE, headers={"x-experiment-spiralogic": "on"})
        assert canary.status_code == 200
        assert canary.headers["x-orchestrator"] == "spiralogic"
        assert canary.json()["data"]["message"]
        assert http.post("/api/oracle/chat", json=SMOKE).headers["x-orchestrator"] == "baseline"
        for i in range(48):
            text, element = K6_CASES[i % len(K6_CASES)]
            body = {"userId": f"k6-user-{i % 10}", "text": text, "element": element}
            assert http.post("/api/oracle/chat", json=body, headers={"x-experiment-spiralogic": "on"}).status_code == 200
    server.stop()  # graceful: buffered telemetry is flushed before the workers exit

    assert rows_of(database_url, "SELECT COUNT(*) AS n FROM consciousness_turn_meta")[0]["n"] == 50
    latency = rows_of(database_url, PLAYBOOK_QUERIES["latency"])
    assert latency and all(0 <= row["p50"] <= row["p95"] <= row["p99"] < 700 for row in latency)
    modes = rows_of(database_url, PLAYBOOK_QUERIES["modes"])
    assert sum(row["count"] for row in modes) == 50
    assert float(sum(row["percentage"] for row in modes)) == pytest.approx(100, abs=0.05)
    assert all(0 <= row["cache_hit_ratio"] <= 1 for row in rows_of(database_url, PLAYBOOK_QUERIES["cache_hit_ratio"]))
    assert all(row["error_rate"] == 0 for row in rows_of(database_url, PLAYBOOK_QUERIES["error_rate"]))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_ga_setting_with_header_off_answers_baseline(database_url, tmp_path):
    with LiveServer(tmp_path, database_url, env={"ORCHESTRATOR": "spiralogic"}) as live:
        assert httpx.post(f"{live.url}/api/oracle/chat", json=SMOKE).headers["x-orchestrator"] == "spiralogic"
        off = httpx.post(f"{live.url}/api/oracle/chat", json=SMOKE, headers={"x-experiment-spiralogic": "off"})
        assert off.headers["x-orchestrator"] == "baseline"

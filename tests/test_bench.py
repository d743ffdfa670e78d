"""``load/bench.py`` end to end, briefly: real servers, a real load, a report that adds up.

The numbers themselves belong to docs/benchmarks.md; this only proves that the
one command still starts both servers, drives them and reports what it saw.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import POSTGRES_URL

pytestmark = pytest.mark.server
REPO = Path(__file__).resolve().parent.parent
UPSTREAM_P50_MS = 50


def bench(results: Path, *extra: str) -> tuple[dict, str]:
    argv = [sys.executable, "load/bench.py", "--users", "4", "--warmup", "1", "--duration", "3", "--name", "smoke"]
    argv += ["--upstream", "simulated", "--p50-ms", str(UPSTREAM_P50_MS), "--p95-ms", "80", "--results-dir", str(results), *extra]
    run = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    [report] = results.glob("*-smoke.json")
    assert "| req/s |" in report.with_suffix(".md").read_text()
    return json.loads(report.read_text()), run.stdout + run.stderr


def assert_measured(summary: dict, workers: int) -> None:
    assert summary["requests"] > 0 and summary["error_rate"] == 0
    # Every answer waited for the simulated upstream: none can be quicker than its fastest draws.
    assert summary["latency_ms"]["p50"] >= UPSTREAM_P50_MS * 0.6
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["p99"] <= summary["latency_ms"]["max"]
    assert len(summary["resources"]["workers"]) == workers
    assert all(worker["rss_mb_max"] > 10 for worker in summary["resources"]["workers"])


def test_the_bench_measures_spiralogic_beside_the_floor(tmp_path):
    report, _ = bench(tmp_path)
    ours, floor = report["spiralogic"], report["floor"]
    assert_measured(ours, workers=2)
    assert_measured(floor, workers=2)
    assert ours["orchestrator_mix"] == {"spiralogic": 1.0}
    assert ours["server_latency_ms"]["count"] == ours["requests"]
    assert ours["streamed_requests"] > 0 and ours["first_token_ms"]["count"] == ours["streamed_requests"]
    overhead = report["overhead"]["p50_ms"]
    assert overhead["diff"] == pytest.approx(ours["latency_ms"]["p50"] - floor["latency_ms"]["p50"], abs=0.01)


def test_the_bench_runs_on_postgresql_in_a_schema_of_its_own(tmp_path):
    report, output = bench(tmp_path, "--db", "postgresql", "--skip-floor", "--workers", "1")
    assert_measured(report["spiralogic"], workers=1)
    assert report["config"]["db"] == "postgresql" and "floor" not in report
    schema = re.search(r"postgresql schema (\w+) created", output).group(1)
    admin = sa.create_engine(POSTGRES_URL)
    with admin.connect() as conn:
        left = conn.execute(sa.text("SELECT count(*) FROM information_schema.schemata WHERE schema_name = :s"), {"s": schema}).scalar()
    admin.dispose()
    assert left == 0


@pytest.mark.parametrize(
    "script, argv, printed",
    [
        # Past 800 turns: a turn left open would hold its admission slot and the rest would be refused.
        ("profile_turns.py", ["--turns", "900"], r"[\d.]+ ms per turn over 900 turns"),
        ("alert_round.py", ["--rate", "20", "--rounds", "2"], r"6000 turns in 300 s \(20/s\): alert round \d+ ms"),
        ("history_read.py", ["--turns", "500", "--reads", "50"], r"with an index covering the two JSON fields: \d+ µs per read"),
    ],
)
def test_the_in_process_measures_run(script, argv, printed):
    run = subprocess.run([sys.executable, f"load/{script}", *argv], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert re.search(printed, run.stdout), run.stdout

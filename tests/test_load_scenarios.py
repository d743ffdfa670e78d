"""The playbook's Locust scenario runs headless against a real server, thresholds included."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
from live_server import LiveServer

pytestmark = [pytest.mark.server, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
REPO = Path(__file__).resolve().parent.parent
LOCUST = str(Path(sys.executable).with_name("locust"))


def run_locust(url: str, out: Path) -> subprocess.CompletedProcess:
    argv = [LOCUST, "-f", "load/locustfile.py", "--headless", "-u", "4", "-r", "4", "-t", "8s", "--host", url, "--csv", str(out), "--only-summary"]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)


def aggregated(out: Path) -> dict[str, str]:
    with Path(f"{out}_stats.csv").open(newline="") as stats:
        return next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")


def test_the_scenario_passes_its_thresholds_on_a_healthy_server(database_url, tmp_path):
    with LiveServer(tmp_path, database_url) as live:
        result = run_locust(live.url, tmp_path / "locust")
    assert result.returncode == 0, result.stderr[-2000:]
    totals = aggregated(tmp_path / "locust")
    assert int(totals["Request Count"]) > 0
    assert int(totals["Failure Count"]) == 0


def test_a_p95_over_700_ms_fails_the_run_as_k6_would(database_url, tmp_path):
    # A hanging provider with budgets past the threshold: every answer is a slow fallback.
    slow = {
        "SPIRALOGIC_GENERATION__PROVIDER": "simulated",
        "SPIRALOGIC_PLUGINS__SIMULATED__HANG_RATE": "1.0",
        "SPIRALOGIC_SOFT_BUDGET_MS": "800",
        "SPIRALOGIC_HARD_BUDGET_MS": "900",
    }
    with LiveServer(tmp_path, database_url, env=slow) as live:
        result = run_locust(live.url, tmp_path / "locust")
    assert result.returncode == 1
    assert int(aggregated(tmp_path / "locust")["Request Count"]) > 0

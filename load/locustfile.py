"""The playbook's k6 scenario for Locust, for operators who run Python only.

    locust -f load/locustfile.py --headless -u 10 -r 10 -t 2m \\
        --host http://127.0.0.1:8000 --csv load/results/locust

The playbook's thresholds (P95 < 700 ms, errors < 1%) are checked when the run
ends: the process exits 1 if either fails, as k6 does. Where the canary header
is staff-only (production settings), add ``--staff-key KEY`` (or set
``SPIRALOGIC_STAFF_KEY``).
"""

from __future__ import annotations

import random

from locust import HttpUser, between, events, task

TEST_CASES = [
    {"text": "Help me find clarity in this decision", "element": "air"},
    {"text": "I feel stuck and need grounding", "element": "earth"},
    {"text": "Guide me through this emotional challenge", "element": "water"},
    {"text": "I need energy to take action", "element": "fire"},
    {"text": "Connect me with deeper wisdom", "element": "aether"},
]
P95_LIMIT_MS = 700
ERROR_LIMIT = 0.01


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    parser.add_argument("--staff-key", env_var="SPIRALOGIC_STAFF_KEY", default="", help="sent as x-staff-key")


class OracleUser(HttpUser):
    wait_time = between(1, 3)

    @task
    def chat(self) -> None:
        body = {"userId": f"locust-user-{id(self) % 10_000}", **random.choice(TEST_CASES)}
        headers = {"x-experiment-spiralogic": "on"}
        if self.environment.parsed_options and self.environment.parsed_options.staff_key:
            headers["x-staff-key"] = self.environment.parsed_options.staff_key
        with self.client.post("/api/oracle/chat", json=body, headers=headers, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif not response.json()["data"]["message"]:
                response.failure("empty message")
            elif response.headers.get("x-orchestrator") != "spiralogic":
                response.failure(f"answered by {response.headers.get('x-orchestrator')}")


@events.quitting.add_listener
def check_thresholds(environment, **_kwargs) -> None:
    total = environment.stats.total
    p95 = total.get_response_time_percentile(0.95)
    if total.fail_ratio >= ERROR_LIMIT or p95 >= P95_LIMIT_MS:
        environment.process_exit_code = 1

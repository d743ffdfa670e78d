"""statsd metrics reach a real UDP collector, named as the playbook's dashboards expect."""

from __future__ import annotations

import socket

from spiralogic.state import app_state


def received(sock) -> list[str]:
    lines = []
    try:
        while True:
            lines.extend(sock.recv(65536).decode().splitlines())
            sock.settimeout(0.2)
    except socket.timeout:
        return lines


def test_a_turn_emits_latency_first_token_mode_and_tokens(make_app, collector):
    app = make_app(**{"statsd.host": "127.0.0.1", "statsd.port": collector.getsockname()[1], "statsd.prefix": "sl"})
    body = {"userId": "m", "text": "Help me find clarity", "element": "air"}
    app.test_client().post("/api/oracle/chat", json=body, headers={"x-experiment-spiralogic": "on"})
    app_state(app).telemetry.flush()
    names = {line.split(":")[0]: line.split("|")[1] for line in received(collector)}
    assert names["sl.orchestrator_latency.spiralogic.full"] == "ms"
    assert names["sl.first_token.spiralogic"] == "ms"
    assert names["sl.mode.spiralogic.full"] == "c"
    assert names["sl.chat.turn.spiralogic"] == "c"
    assert names["sl.tokens_per_response.spiralogic"] == "ms"
    assert "sl.chat.error.spiralogic" not in names

"""The floor: a bare Flask app on the same gunicorn + gevent stack, for comparison.

Its one endpoint, ``POST /api/oracle/chat``, parses the JSON body, waits as
long as the simulated upstream would (a log-normal draw with the same p50 and
p95, ``gevent.sleep``) and answers a small JSON. Whatever Spiralogic costs
beyond this floor (routing, guardrails, budgets, fusion, shaping, telemetry)
is its overhead. It never fails, hangs or streams: it is the healthy upstream.

Configured by environment variables, read once per worker:
``FLOOR_P50_MS`` and ``FLOOR_P95_MS`` (both 0, the default, mean no wait: the
template-voice profile).

Run by ``load/bench.py`` as ``gunicorn -k gevent --chdir load floor_app:app``.
"""

from __future__ import annotations

import math
import os
import random
from statistics import NormalDist

import gevent
from flask import Flask, jsonify, request

Z95 = NormalDist().inv_cdf(0.95)


def latency_sampler(p50_ms: float, p95_ms: float):
    """A function drawing one wait (seconds); the same fit as plugins/simulated_upstream.py."""
    if p50_ms <= 0:
        return lambda: 0.0
    mu = math.log(p50_ms / 1000)
    sigma = math.log(max(p95_ms, p50_ms) / p50_ms) / Z95
    return lambda: random.lognormvariate(mu, sigma)


def create_app() -> Flask:
    app = Flask(__name__)
    draw = latency_sampler(float(os.environ.get("FLOOR_P50_MS", 0)), float(os.environ.get("FLOOR_P95_MS", 0)))

    @app.post("/api/oracle/chat")
    def chat():
        body = request.get_json(silent=True) or {}
        wait = draw()
        gevent.sleep(wait)
        response = jsonify(
            {
                "data": {"message": "floor", "mode": "floor", "element": body.get("element")},
                "meta": {"latencyMs": round(wait * 1000)},
            }
        )
        # The same response headers as the real service, so the wire work matches too.
        response.headers["x-orchestrator"] = response.headers["x-orchestrator-mode"] = "floor"
        return response

    return app


app = create_app()

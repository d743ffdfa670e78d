"""The per-turn statsd metrics the playbook's dashboards and alerts are built on.

Names follow the playbook: ``orchestrator_latency`` (by orchestrator and mode),
``chat.error``, first-token time, tokens per response and mode counters
(``archetype.cache.hit|miss`` is emitted where the cache is looked up).
"""

from __future__ import annotations

from spiralogic.metrics import Metrics
from spiralogic.turn import TurnRecord


def emit_turn_metrics(metrics: Metrics, record: TurnRecord) -> None:
    meta = record.metadata
    orchestrator, mode = record.orchestrator, record.orchestrator_mode
    metrics.timing(f"orchestrator_latency.{orchestrator}.{mode}", meta["latencyMs"])
    metrics.timing(f"first_token.{orchestrator}", meta["firstTokenMs"])
    metrics.incr(f"chat.turn.{orchestrator}")
    metrics.incr(f"mode.{orchestrator}.{mode}")
    if "error" in record.resonance:
        metrics.incr(f"chat.error.{orchestrator}")
    tokens = meta.get("tokens") or {}
    metrics.timing(f"tokens_per_response.{orchestrator}", tokens.get("prompt", 0) + tokens.get("completion", 0))

"""The simulated upstream: fitted latencies, fault rates, real streaming, interruptible hangs, app wiring."""

from __future__ import annotations

import random
import time
from collections import Counter
from pathlib import Path

import gevent
import pytest

from spiralogic.components import PluginContext
from spiralogic.plugins import build_plugin_manager
from spiralogic.settings import load_settings
from spiralogic.turn import Prompt
from spiralogic_plugins.simulated_upstream import (
    SimulatedConfigError,
    SimulatedStreamCut,
    SimulatedUpstream,
    SimulatedUpstreamError,
    SimulatedUpstreamFailure,
)

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "config")
DRAWS = 5000


def provider(**config) -> SimulatedUpstream:
    return SimulatedUpstream.from_context(PluginContext(id="simulated", config=config, config_dir=CONFIG_DIR))


def prompt(seed: str = "turn-0") -> Prompt:
    return Prompt(text="Help me find clarity in this decision", element="air", mode="full", seed=seed)


def quantile(values: list[float], q: float) -> float:
    return sorted(values)[int(q * (len(values) - 1))]


def plans(upstream: SimulatedUpstream, n: int = DRAWS) -> list:
    rng = random.Random(7)
    return [upstream.plan(rng) for _ in range(n)]


# -- Latency plans (no sleeping) ---------------------------------------------


def test_total_latency_fits_the_configured_p50_and_p95():
    totals_ms = [p.total_s * 1000 for p in plans(provider(latency_p50_ms=200, latency_p95_ms=400))]
    assert quantile(totals_ms, 0.50) == pytest.approx(200, rel=0.10)
    assert quantile(totals_ms, 0.95) == pytest.approx(400, rel=0.10)


def test_equal_quantiles_give_a_fixed_latency():
    totals_ms = {round(p.total_s * 1000, 6) for p in plans(provider(latency_p50_ms=50, latency_p95_ms=50), 100)}
    assert totals_ms == {50}


def test_first_chunk_is_a_share_of_the_total_unless_configured():
    for plan in plans(provider(chunks=4), 200):
        assert 0 < plan.first_chunk_s < plan.total_s
        assert len(plan.gaps_s) == 3 and all(gap > 0 for gap in plan.gaps_s)
    for plan in plans(provider(first_chunk_ms=30), 200):
        assert plan.first_chunk_s == pytest.approx(0.030)


def test_fault_rates_are_honoured():
    upstream = provider(error_rate=0.1, hang_rate=0.05, cut_rate=0.2, chunks=5)
    drawn = plans(upstream)
    fates = Counter(p.fate for p in drawn)
    assert 0.07 * DRAWS < fates["error"] < 0.13 * DRAWS
    assert 0.03 * DRAWS < fates["hang"] < 0.07 * DRAWS
    assert 0.16 * DRAWS < fates["cut"] < 0.24 * DRAWS
    assert sum(fates.values()) == DRAWS and set(fates) == {"ok", "error", "hang", "cut"}
    for plan in drawn:
        if plan.fate == "cut":
            assert 1 <= plan.delivered < 5
        elif plan.fate == "error":
            assert 0 <= plan.delivered < 5
        else:
            assert plan.delivered == 5
        assert plan.hang_s == (30.0 if plan.fate == "hang" else 0.0)


def test_a_seed_makes_draws_follow_the_turn():
    seeded = provider(seed=3, error_rate=0.5)
    assert seeded.plan(seeded._rng(prompt("a"))) == seeded.plan(seeded._rng(prompt("a")))
    assert len({seeded.plan(seeded._rng(prompt(f"t{i}"))).total_s for i in range(20)}) == 20
    unseeded = provider()
    assert unseeded.plan(unseeded._rng(prompt("a"))) != unseeded.plan(unseeded._rng(prompt("a")))


# -- Streaming (real, small sleeps) -------------------------------------------


def timed_chunks(upstream: SimulatedUpstream, p: Prompt | None = None) -> list[tuple[float, str]]:
    started = time.monotonic()
    return [(time.monotonic() - started, chunk) for chunk in upstream.generate(p or prompt())]


def test_streams_the_configured_chunks_over_the_drawn_time():
    times = []
    for i in range(5):
        received = timed_chunks(provider(latency_p50_ms=20, latency_p95_ms=40, chunks=6), prompt(f"t{i}"))
        assert len(received) == 6 and all(chunk.strip() for _, chunk in received)
        stamps = [t for t, _ in received]
        assert stamps == sorted(stamps) and stamps[0] > 0.001 and stamps[-1] - stamps[0] > 0.002
        times.append(stamps[-1])
    assert 0.005 < sorted(times)[2] < 0.5  # median of five near 20 ms; generous for loaded CI


def test_a_reader_that_wakes_late_finds_the_chunks_already_due():
    # A real stream's chunks arrive on the provider's schedule, not the reader's: a reader
    # stalled for 150 ms after the first chunk (first at 60 ms, last at 200 ms) must not
    # push the end to 60 + 150 + 140 ms, as sleeping each gap anew would.
    upstream = provider(latency_p50_ms=200, latency_p95_ms=200, first_chunk_ms=60, chunks=4)
    started = time.monotonic()
    for index, _ in enumerate(upstream.generate(prompt())):
        if index == 0:
            time.sleep(0.15)
    assert 0.19 < time.monotonic() - started < 0.3


def test_reply_is_readable_text_from_the_prompt():
    text = "".join(provider(latency_p50_ms=1, latency_p95_ms=1, chunks=50).generate(prompt()))
    assert "Help me find clarity" in text and "air" in text
    assert "  " not in text and text == text.strip()


def test_first_chunk_ms_sets_time_to_first_chunk():
    received = timed_chunks(provider(latency_p50_ms=5, latency_p95_ms=5, first_chunk_ms=40, chunks=3))
    assert received[0][0] >= 0.035


def test_a_hang_is_interrupted_promptly_by_a_gevent_timeout():
    upstream = provider(hang_rate=1, hang_ms=30000)
    started = time.monotonic()
    with pytest.raises(gevent.Timeout), gevent.Timeout(0.1):
        list(upstream.generate(prompt()))
    assert time.monotonic() - started < 1.0


def test_a_hang_is_interrupted_promptly_by_a_greenlet_kill():
    worker = gevent.spawn(lambda: list(provider(hang_rate=1).generate(prompt())))
    gevent.sleep(0.05)
    started = time.monotonic()
    worker.kill(timeout=1)
    assert worker.dead and time.monotonic() - started < 0.5


def test_an_error_raises_upstream_error():
    with pytest.raises(SimulatedUpstreamError):
        list(provider(latency_p50_ms=2, latency_p95_ms=4, error_rate=1).generate(prompt()))


def test_a_cut_raises_after_at_least_one_chunk():
    for i in range(20):
        received = []
        with pytest.raises(SimulatedStreamCut):
            for chunk in provider(latency_p50_ms=1, latency_p95_ms=2, cut_rate=1, chunks=4).generate(prompt(f"t{i}")):
                received.append(chunk)
        assert 1 <= len(received) < 4


def test_a_cut_of_a_single_chunk_stream_comes_after_that_chunk():
    received = []
    with pytest.raises(SimulatedStreamCut):
        for chunk in provider(latency_p50_ms=1, latency_p95_ms=2, cut_rate=1, chunks=1).generate(prompt()):
            received.append(chunk)
    assert len(received) == 1


def test_injected_failures_share_one_base():
    assert issubclass(SimulatedUpstreamError, SimulatedUpstreamFailure)
    assert issubclass(SimulatedStreamCut, SimulatedUpstreamFailure)


# -- Config ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"latency_p50_ms": -1}, "latency_p50_ms"),
        ({"latency_p50_ms": 0}, "latency_p50_ms"),
        ({"latency_p50_ms": 300, "latency_p95_ms": 200}, "latency_p95_ms"),
        ({"first_chunk_ms": -5}, "first_chunk_ms"),
        ({"chunks": 0}, "chunks"),
        ({"chunks": 2.5}, "chunks"),
        ({"chunks": True}, "chunks"),
        ({"error_rate": 1.5}, "error_rate"),
        ({"hang_rate": -0.1}, "hang_rate"),
        ({"cut_rate": "often"}, "cut_rate"),
        ({"hang_ms": float("nan")}, "hang_ms"),
        ({"seed": "abc"}, "seed"),
        ({"error_rate": 0.6, "cut_rate": 0.6}, "error_rate"),
        ({"latency_p50": 100}, "latency_p50"),
    ],
)
def test_bad_config_is_refused_naming_the_key(config, key):
    with pytest.raises(SimulatedConfigError, match=rf"plugins\.simulated\.{key}\b"):
        provider(**config)


def test_config_keys_from_environment_variables_are_upper_case():
    assert provider(LATENCY_P50_MS=10, LATENCY_P95_MS=20).config.latency_p95_ms == 20


def test_the_documented_defaults_build():
    import tomllib

    table = tomllib.loads((Path(CONFIG_DIR) / "settings.toml").read_text())["default"]["plugins"]["simulated"]
    assert provider(**table).config == provider().config


# -- Wiring ------------------------------------------------------------------


def test_listed_by_the_real_plugin_manager():
    pm = build_plugin_manager([], [])
    assert pm.get_plugin("simulated_upstream") is not None


def test_answers_chat_turns_when_selected(make_app):
    app = make_app(
        **{
            "generation.provider": "simulated",
            "plugins.simulated.latency_p50_ms": 10,
            "plugins.simulated.latency_p95_ms": 20,
            "plugins.simulated.first_chunk_ms": 10,
        }
    )
    response = app.test_client().post("/api/oracle/chat", json={"userId": "load-1", "text": "Steady me", "element": "earth"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert "simulated reply about Steady me" in body["data"]["message"]
    assert body["meta"]["latencyMs"] >= 9 and body["meta"]["firstTokenMs"] >= 9


@pytest.mark.parametrize("environment", ["development", "testing", "staging", "production"])
def test_never_the_default_provider(monkeypatch, environment):
    monkeypatch.setenv("SPIRALOGIC_ENV", environment)
    assert load_settings().generation.provider != "simulated"

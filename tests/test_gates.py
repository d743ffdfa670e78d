"""Promotion gates: the boundary table, the hold rule, and replayed hours of turn rows."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from test_monitoring import T0, TOKEN, cli_database, engine, insert, minute, turn  # noqa: F401 - fixtures

from spiralogic import gates
from spiralogic.cli import cli
from spiralogic.gates import SampleResult, Verdict
from spiralogic.monitoring import Aggregate
from spiralogic.settings import ConfigError

CONFIG = gates.load_gates()
RULES = CONFIG.evaluation
HEALTHY = Aggregate(
    count=1000,
    latency_p50_ms=200,
    latency_p95_ms=500,
    first_token_p95_ms=300,
    errors=0,
    fallbacks=0,
    cache_hits=500,
    quality_scored=1000,
    quality_mean=0.80,
)
BASELINE = Aggregate(count=100, quality_scored=100, quality_mean=0.80)
GATE = {gate.name: gate for gate in CONFIG.gates}
S, F, I, E = Verdict.SUCCESSFUL, Verdict.FAILED, Verdict.INCONCLUSIVE, Verdict.ERROR


# -- The rules as the playbook writes them ------------------------------------------


def test_the_shipped_rules_are_the_playbooks_seven_gates():
    assert [(g.title, g.operator, g.threshold, g.unit, g.relative_to) for g in CONFIG.gates] == [
        ("P95 Latency", "<=", 700, "ms", None),
        ("P50 Latency", "<=", 350, "ms", None),
        ("First Token", "<", 800, "ms", None),
        ("Error Rate", "<=", 0.75, "%", None),
        ("Fallback Rate", "<=", 3, "%", None),
        ("Cache Hit Rate", ">=", 40, "%", None),
        ("Quality Score", ">=", -2, "%", "baseline"),
    ]
    assert (RULES.candidate, RULES.baseline, RULES.hold_minutes) == ("spiralogic", "baseline", 60)


@pytest.mark.parametrize(
    "text",
    [
        'operator = "=<"',
        'metric = "latency_p90_ms"',
        "thresold = 1",
    ],
)
def test_a_malformed_rule_is_a_config_error(tmp_path, text):
    shipped = gates.DEFAULT_PATH.read_text()
    path = tmp_path / "gates.toml"
    path.write_text(shipped.replace('operator = "<="', text, 1))
    with pytest.raises(ConfigError, match="gates rules"):
        gates.load_gates(path)


def test_a_missing_rules_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError):
        gates.load_gates(tmp_path / "absent.toml")


# -- The boundary table -------------------------------------------------------------


@pytest.mark.parametrize(
    "gate, changes, verdict",
    [
        ("p95_latency", {"latency_p95_ms": 700}, S),
        ("p95_latency", {"latency_p95_ms": 700.5}, F),
        ("p50_latency", {"latency_p50_ms": 350}, S),
        ("p50_latency", {"latency_p50_ms": 351}, F),
        ("first_token", {"first_token_p95_ms": 799}, S),
        ("first_token", {"first_token_p95_ms": 800}, F),  # strictly under 800
        ("error_rate", {"count": 400, "errors": 3}, S),  # exactly 0.75%
        ("error_rate", {"count": 10_000, "errors": 75}, S),
        ("error_rate", {"count": 10_000, "errors": 76}, F),
        ("fallback_rate", {"count": 100, "fallbacks": 3}, S),  # exactly 3%
        ("fallback_rate", {"count": 1000, "fallbacks": 31}, F),
        ("cache_hit_rate", {"cache_hits": 400}, S),  # exactly 40%
        ("cache_hit_rate", {"cache_hits": 399}, F),
        ("quality_score", {"quality_mean": 0.78}, S),  # exactly baseline 80% - 2pp
        ("quality_score", {"quality_mean": 0.7799}, F),
        ("p95_latency", {"latency_p95_ms": None}, I),
        ("error_rate", {"count": 0, "errors": 0}, I),
    ],
)
def test_boundaries(gate, changes, verdict):
    result = gates.judge(GATE[gate], replace(HEALTHY, **changes), BASELINE, RULES)
    assert result.verdict is verdict, result


def test_quality_at_the_threshold_passes_despite_binary_floating_point():
    # 0.57 * 100 is 56.99999999999999 in binary floating point; 59 - 2 is 57.
    candidate, baseline = replace(HEALTHY, quality_mean=0.57), replace(BASELINE, quality_mean=0.59)
    assert gates.judge(GATE["quality_score"], candidate, baseline, RULES).verdict is S


def test_quality_is_inconclusive_without_enough_baseline_turns():
    small = replace(BASELINE, count=RULES.baseline_min_requests - 1)
    result = gates.judge(GATE["quality_score"], HEALTHY, small, RULES)
    assert (result.verdict, result.threshold) == (I, None)
    assert "baseline cohort" in result.note


def test_every_gate_passes_a_healthy_aggregate():
    assert [gates.judge(g, HEALTHY, BASELINE, RULES).verdict for g in CONFIG.gates] == [S] * 7


# -- Samples -----------------------------------------------------------------------


def test_a_sample_with_too_few_turns_is_inconclusive_whatever_it_measured():
    quiet = replace(HEALTHY, count=RULES.sample_min_requests - 1, latency_p95_ms=5000)
    assert gates.judge_sample(T0, quiet, BASELINE, CONFIG) == SampleResult(T0, RULES.sample_min_requests - 1, I)


def test_a_sample_fails_naming_its_failed_gates():
    bad = replace(HEALTHY, latency_p95_ms=900, errors=100)
    assert gates.judge_sample(T0, bad, BASELINE, CONFIG) == SampleResult(T0, 1000, F, ("P95 Latency", "Error Rate"))


def test_a_sample_with_a_gate_it_cannot_judge_is_inconclusive():
    assert gates.judge_sample(T0, HEALTHY, Aggregate(), CONFIG).verdict is I
    assert gates.judge_sample(T0, HEALTHY, BASELINE, CONFIG).verdict is S


# -- Holding -------------------------------------------------------------------------


def samples(*runs: tuple[Verdict, int]) -> list[SampleResult]:
    verdicts = [verdict for verdict, count in runs for _ in range(count)]
    return [
        SampleResult(minute(i), 100, v, ("P95 Latency",) if v is F else (), "OperationalError: away" if v is E else "")
        for i, v in enumerate(verdicts)
    ]


PASSING_GATES = [gates.judge(g, HEALTHY, BASELINE, RULES) for g in CONFIG.gates]


def reasons(sample_list: list[SampleResult], requests: int = 5000) -> list[str]:
    return gates.hold_reasons(sample_list, PASSING_GATES, requests, RULES)


def test_an_hour_of_passing_samples_holds():
    assert reasons(samples((S, 60))) == []


def test_inconclusive_samples_pause_never_fail():
    assert reasons(samples((S, 20), (I, 15), (S, 20), (I, 5))) == []
    assert reasons(samples((S, 57), (I, 1), (S, 2))) == []


def test_the_last_conclusive_samples_must_all_pass():
    (reason,) = reasons(samples((S, 56), (F, 1), (I, 2), (S, 1)))
    assert reason.startswith("the last 5 conclusive samples did not all pass: 12:56 (P95 Latency)")


def test_too_few_conclusive_samples_do_not_hold():
    (reason,) = reasons(samples((I, 57), (S, 3)))
    assert reason == "3 conclusive samples, the last 5 must pass"


def test_error_samples_do_not_count_as_minutes():
    (reason,) = reasons(samples((S, 30), (E, 1), (S, 29)))
    assert reason == "59 minutes of samples, holding needs 60 (1 failed to query: OperationalError: away)"


def test_a_short_window_does_not_hold():
    assert reasons(samples((S, 30))) == ["30 minutes of samples, holding needs 60"]


def test_too_few_turns_do_not_hold():
    assert reasons(samples((S, 60)), requests=RULES.min_requests - 1) == [
        f"{RULES.min_requests - 1} candidate turns in the window, holding needs {RULES.min_requests}"
    ]


def test_a_sustained_failed_run_anywhere_does_not_hold():
    assert reasons(samples((S, 20), (F, RULES.max_failed_run), (S, 35))) == []
    (reason,) = reasons(samples((S, 20), (F, 3), (I, 2), (F, 3), (S, 32)))
    assert reason == "6 samples in a row failed, 12:20 to 12:27 (P95 Latency); at most 5 may"


def test_a_failing_window_gate_does_not_hold():
    failing = [*PASSING_GATES[:-1], gates.judge(GATE["quality_score"], replace(HEALTHY, quality_mean=0.5), BASELINE, RULES)]
    assert gates.hold_reasons(samples((S, 60)), failing, 5000, RULES) == [
        "Quality Score: 50 % over the window, needs >= 78 %"
    ]


# -- Replayed hours of turn rows ---------------------------------------------------------

#: the evaluation time: 65 minutes of traffic from T0, judged over its last whole 60 minutes
NOW = minute(65) + timedelta(seconds=30)
PER_MINUTE = 30


def traffic(engine, *, slow=range(0), quiet=range(0), quality=0.80, baseline=0.81) -> None:
    """65 minutes of candidate and baseline turns from T0, healthy unless told otherwise.

    Candidate minute: 30 turns, one at 600 ms and the rest around 200 ms, half cache hits,
    a fallback every other minute, an error every 20 minutes; in ``slow`` minutes 8 of the
    30 take 900 ms; ``quiet`` minutes have no candidate turns. Baseline: 5 turns a minute.
    """
    rows = []
    for m in range(65):
        for i in range(0 if m in quiet else PER_MINUTE):
            latency = 900 if m in slow and i < 8 else 600 if i == 29 else 200 + i
            rows.append(
                turn(
                    minute(m) + timedelta(seconds=2 * i),
                    latency=latency,
                    first_token=150,
                    cache_hit=i % 2 == 0,
                    error=m % 20 == 0 and i == 1,
                    mode="fallback" if m % 2 == 0 and i == 2 else "full",
                    user=f"user-{i}",
                    qualityScore=quality,
                )
            )
        rows += [turn(minute(m) + timedelta(seconds=i), orchestrator="baseline", qualityScore=baseline) for i in range(5)]
    insert(engine, rows)


def test_a_replayed_healthy_hour_holds(engine):
    traffic(engine)

    evaluation = gates.evaluate(engine, CONFIG, NOW)

    assert evaluation.reasons == ()
    assert evaluation.holding
    assert (evaluation.since, evaluation.until) == (minute(5), minute(65))
    assert (evaluation.requests, evaluation.baseline_requests) == (60 * PER_MINUTE, 60 * 5)
    assert [s.verdict for s in evaluation.samples] == [S] * 60
    assert [s.minute for s in evaluation.samples] == [minute(m) for m in range(5, 65)]
    assert {g.verdict for g in evaluation.gates} == {S}
    values = {g.name: g.value for g in evaluation.gates}
    assert values["p95_latency"] == 228 and values["p50_latency"] == 214
    assert values["quality_score"] == pytest.approx(80) and evaluation.gates[-1].threshold == pytest.approx(79)


def test_a_bad_ten_minutes_of_p95_at_the_end_fails(engine):
    traffic(engine, slow=range(55, 65))

    evaluation = gates.evaluate(engine, CONFIG, NOW)

    assert not evaluation.holding
    failed = [s for s in evaluation.samples if s.verdict is F]
    assert len(failed) >= 10 and all(s.failed == ("P95 Latency",) for s in failed)
    assert any(r.startswith("the last 5 conclusive samples did not all pass") and "P95 Latency" in r for r in evaluation.reasons)


def test_a_bad_ten_minutes_of_p95_in_the_middle_fails(engine):
    traffic(engine, slow=range(30, 40))

    evaluation = gates.evaluate(engine, CONFIG, NOW)

    assert not evaluation.holding
    # The hour's aggregate P95 survives 10 slow minutes; the run of failed samples does not.
    assert next(g for g in evaluation.gates if g.name == "p95_latency").verdict is S
    (reason,) = evaluation.reasons
    assert reason.startswith("14 samples in a row failed, 12:30 to 12:43 (P95 Latency)")


def test_minutes_without_traffic_are_inconclusive_not_failures(engine):
    traffic(engine, quiet=range(20, 36))

    evaluation = gates.evaluate(engine, CONFIG, NOW)

    verdicts = {s.minute: s.verdict for s in evaluation.samples}
    # A sample covers its trailing 5 minutes: all that reach into the quiet ones have too few turns.
    assert [m for m, v in verdicts.items() if v is I] == [minute(m) for m in range(20, 40)]
    assert F not in verdicts.values()
    assert evaluation.holding, evaluation.reasons


def test_quality_below_the_baseline_cohort_fails(engine):
    traffic(engine, quality=0.78, baseline=0.81)

    evaluation = gates.evaluate(engine, CONFIG, NOW)

    assert "Quality Score: 78 % over the window, needs >= 79 %" in evaluation.reasons


def test_an_unreadable_database_gives_error_samples(tmp_path):
    empty = sa.create_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables

    evaluation = gates.evaluate(empty, CONFIG, NOW)

    assert {s.verdict for s in evaluation.samples} == {E}
    assert {g.verdict for g in evaluation.gates} == {E}
    assert not evaluation.holding
    assert evaluation.reasons[0].startswith("the telemetry could not be read: OperationalError")


# -- CLI and admin API -------------------------------------------------------------------


def test_cli_gates_hold_exits_0(runner, cli_database):
    traffic(cli_database)

    result = runner.invoke(cli, ["gates", "--until", NOW.isoformat()])

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Promotion gates for spiralogic, 2026-03-01 12:05 to 2026-03-01 13:05 UTC: 1800 turns (300 baseline)")
    assert "60 successful, 0 failed, 0 inconclusive, 0 error" in lines[0]
    assert lines[2].split() == ["gate", "value", "threshold", "verdict", "failed", "samples"]
    assert lines[3].split() == ["P95", "Latency", "228", "ms", "<=", "700", "ms", "successful", "0"]
    assert lines[-1] == "HOLD"


def test_cli_gates_not_holding_exits_1_and_names_the_gate(runner, cli_database):
    traffic(cli_database, slow=range(55, 65))

    result = runner.invoke(cli, ["gates", "--until", NOW.isoformat()])

    assert result.exit_code == 1, result.output
    assert "NOT HOLDING" in result.output
    p95_row = next(line for line in result.output.splitlines() if line.startswith("P95 Latency"))
    assert p95_row.split()[-1] != "0"  # failed samples
    assert "P95 Latency" in result.output.split("NOT HOLDING")[1]


def test_cli_gates_json_and_window(runner, cli_database):
    traffic(cli_database)

    result = runner.invoke(cli, ["gates", "--until", NOW.isoformat(), "--window", "30m", "--json"])

    assert result.exit_code == 1, result.output
    body = json.loads(result.output)
    assert body["holding"] is False
    assert body["reasons"] == ["30 minutes of samples, holding needs 60"]
    assert len(body["samples"]) == 30
    assert (body["gates"][0]["name"], body["gates"][0]["value"]) == ("p95_latency", 228)
    assert body["samples"][0] == {"minute": "2026-03-01T12:35:00+00:00", "requests": 150, "verdict": "successful", "failed": [], "error": ""}


@pytest.mark.parametrize("args", [["--window", "0m"], ["--window", "90s"], ["--window", "an hour"], ["--until", "later"]])
def test_cli_gates_rejects_bad_arguments(runner, cli_database, args):
    assert runner.invoke(cli, ["gates", *args]).exit_code == 2


def test_admin_gates(make_app, database_url):
    from spiralogic.state import app_state

    app = make_app(database_url, admin_token=TOKEN)
    traffic(app_state(app).engine)
    client = app.test_client()
    headers = {"Authorization": f"Bearer {TOKEN}"}

    response = client.get("/admin/gates", query_string={"until": NOW.isoformat()}, headers=headers)
    assert response.status_code == 200
    assert response.get_json()["holding"] is True

    response = client.get("/admin/gates", query_string={"window": "0m"}, headers=headers)
    assert (response.status_code, response.get_json()["error"]["field"]) == (422, "window")
    assert client.get("/admin/gates").status_code == 401

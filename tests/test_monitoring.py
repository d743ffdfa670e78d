"""Monitoring queries over turn rows written with chosen times, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from conftest import POSTGRES_URL

from spiralogic import migrate, monitoring
from spiralogic.cli import cli
from spiralogic.playbook_queries import CACHE_HIT_RATIO, ERROR_RATE, LATENCY_DISTRIBUTION, MODE_DISTRIBUTION
from spiralogic.tables import ConsciousnessTurnMeta, Feedback

TURNS = ConsciousnessTurnMeta.__table__
FEEDBACK = Feedback.__table__
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
HOUR = (T0, T0 + timedelta(hours=1))
TOKEN = "s3cret"
only_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def turn(
    at: datetime,
    *,
    orchestrator: str = "spiralogic",
    mode: str = "full",
    latency: int | None = 200,
    first_token: int | None = 100,
    cache_hit: bool = False,
    error: bool = False,
    user: str = "user-1",
    **metadata,
) -> dict:
    """One telemetry row, shaped like the pipeline's."""
    measured = {"latencyMs": latency, "firstTokenMs": first_token}
    return {
        "id": uuid.uuid4(),
        "user_id": user,
        "created_at": at,
        "orchestrator": orchestrator,
        "orchestrator_mode": mode,
        "metadata": {**{k: v for k, v in measured.items() if v is not None}, **metadata},
        "resonance": {**({"cache_hit": True} if cache_hit else {}), **({"error": ["provider:Timeout"]} if error else {})},
    }


def insert(engine: sa.Engine, rows: list[dict]) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(TURNS), rows)


def minute(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def engine(database_url):
    migrate.upgrade(database_url)
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


# -- The playbook's four -------------------------------------------------------------


def test_latency_percentiles_per_minute_are_nearest_rank(engine):
    insert(engine, [turn(minute(0) + timedelta(seconds=i), latency=10 * (i + 1)) for i in range(20)])
    insert(engine, [turn(minute(1.5), latency=700), turn(minute(1.6), latency=100), turn(minute(1.7), latency=None)])

    rows = monitoring.latency_per_minute(engine, *HOUR)

    assert rows == [
        # percentile_disc over 10..200: ranks ceil(0.5*20)=10, ceil(0.95*20)=19, ceil(0.99*20)=20
        monitoring.LatencyMinute(minute(0), 100, 190, 200),
        monitoring.LatencyMinute(minute(1), 100, 700, 700),
    ]


def test_a_minute_whose_turns_record_no_latency_is_listed_without_percentiles(engine):
    insert(engine, [turn(minute(0), latency=120, first_token=60), turn(minute(1), latency=None, first_token=None)])

    assert monitoring.latency_per_minute(engine, *HOUR) == [
        monitoring.LatencyMinute(minute(0), 120, 120, 120),
        monitoring.LatencyMinute(minute(1), None, None, None),
    ]
    assert monitoring.first_token_p95_per_minute(engine, *HOUR) == [
        monitoring.FirstTokenMinute(minute(0), 60),
        monitoring.FirstTokenMinute(minute(1), None),
    ]


def test_the_window_includes_since_and_excludes_until(engine):
    insert(engine, [turn(T0, latency=1), turn(T0 - timedelta(microseconds=1), latency=2), turn(minute(60), latency=3)])
    assert [(r.minute, r.p50) for r in monitoring.latency_per_minute(engine, *HOUR)] == [(T0, 1)]


def test_mode_distribution_counts_and_percentages(engine):
    modes = ["full"] * 5 + ["lite"] * 2 + ["fallback"]
    insert(engine, [turn(minute(i), mode=mode) for i, mode in enumerate(modes)])
    insert(engine, [turn(minute(0), mode="lite", orchestrator="baseline")])

    assert monitoring.mode_distribution(engine, *HOUR, orchestrator="spiralogic") == [
        monitoring.ModeShare("full", 5, 62.5),
        monitoring.ModeShare("lite", 2, 25.0),
        monitoring.ModeShare("fallback", 1, 12.5),
    ]
    assert [(r.mode, r.percentage) for r in monitoring.mode_distribution(engine, *HOUR)] == [
        ("full", 55.56),
        ("lite", 33.33),
        ("fallback", 11.11),
    ]


def test_cache_hit_ratio_per_hour(engine):
    insert(engine, [turn(minute(i), cache_hit=i < 3) for i in range(4)])
    insert(engine, [turn(minute(70), cache_hit=True)])

    rows = monitoring.cache_hit_ratio_per_hour(engine, T0, T0 + timedelta(hours=2))

    assert rows == [monitoring.CacheHour(T0, 4, 3, 0.75), monitoring.CacheHour(minute(60), 1, 1, 1.0)]


def test_error_and_fallback_rates_per_minute(engine):
    insert(engine, [turn(minute(0), error=i == 0, mode="fallback" if i < 2 else "full") for i in range(8)])
    insert(engine, [turn(minute(2))])

    assert monitoring.error_rate_per_minute(engine, *HOUR) == [
        monitoring.ErrorMinute(minute(0), 8, 1, 0.125),
        monitoring.ErrorMinute(minute(2), 1, 0, 0.0),
    ]
    assert monitoring.fallback_rate_per_minute(engine, *HOUR) == [
        monitoring.FallbackMinute(minute(0), 8, 2, 0.25),
        monitoring.FallbackMinute(minute(2), 1, 0, 0.0),
    ]


# -- Beyond the playbook -----------------------------------------------------------


def test_first_token_p95_per_minute(engine):
    insert(engine, [turn(minute(3), first_token=ms) for ms in range(1, 101)])
    assert monitoring.first_token_p95_per_minute(engine, *HOUR) == [monitoring.FirstTokenMinute(minute(3), 95)]


def test_the_orchestrator_filter(engine):
    insert(engine, [turn(minute(0), latency=100), turn(minute(0), latency=900, orchestrator="baseline", error=True)])

    assert [r.p95 for r in monitoring.latency_per_minute(engine, *HOUR, orchestrator="spiralogic")] == [100]
    assert [r.error_rate for r in monitoring.error_rate_per_minute(engine, *HOUR, orchestrator="baseline")] == [1.0]
    assert monitoring.window_aggregate(engine, *HOUR, orchestrator="spiralogic").count == 1


def feedback(turn_row: dict, accepted: bool | None) -> dict:
    return {"user_id": turn_row["user_id"], "turn_id": turn_row["id"], "sentiment": 0, "rating": 0, "accepted_challenge": accepted}


def test_challenge_acceptance_counts_challenged_turns_with_feedback(engine):
    accepted, declined, unanswered, silent = (turn(minute(i), challenge="med") for i in range(4))
    unchallenged = turn(minute(5))
    insert(engine, [accepted, declined, unanswered, silent, unchallenged])
    with engine.begin() as conn:
        conn.execute(
            sa.insert(FEEDBACK),
            [feedback(accepted, True), feedback(declined, False), feedback(unanswered, None), feedback(unchallenged, True)],
        )

    result = monitoring.challenge_acceptance(engine, *HOUR)

    assert result == monitoring.ChallengeAcceptance(challenged=4, with_feedback=3, accepted=1, acceptance_rate=pytest.approx(1 / 3))


def test_challenge_acceptance_without_feedback_has_no_rate(engine):
    insert(engine, [turn(minute(0), challenge="low")])
    assert monitoring.challenge_acceptance(engine, *HOUR).acceptance_rate is None


def test_worldview_shares_and_match_with_the_previous_recorded_one(engine):
    insert(
        engine,
        [
            turn(T0 - timedelta(days=2), user="a", worldview="pragmatic"),  # before the window: still "previous"
            turn(minute(1), user="a", worldview="pragmatic"),  # matches
            turn(minute(2), user="a"),  # nothing recorded: not adapted
            turn(minute(3), user="a", worldview="pragmatic"),  # matches (skips the unrecorded one)
            turn(minute(1), user="b", worldview="spiritual"),  # first for b: nothing to compare
            turn(minute(2), user="b", worldview="pragmatic", orchestrator="baseline"),  # differs
        ],
    )

    result = monitoring.worldview_adaptation(engine, *HOUR)

    assert (result.turns, result.recorded, result.compared, result.matched) == (5, 4, 3, 2)
    assert result.recorded_share == pytest.approx(0.8)
    assert result.match_rate == pytest.approx(2 / 3)
    assert result.by_worldview == (
        monitoring.WorldviewShare("pragmatic", 3, 0.75, 3, 2, pytest.approx(2 / 3)),
        monitoring.WorldviewShare("spiritual", 1, 0.25, 0, 0, None),
    )
    only_canary = monitoring.worldview_adaptation(engine, *HOUR, orchestrator="spiralogic")
    assert (only_canary.turns, only_canary.recorded, only_canary.compared, only_canary.matched) == (4, 3, 2, 2)


def test_tokens_per_response_adds_completion_and_prompt_when_present(engine):
    insert(
        engine,
        [
            turn(minute(0), tokens={"completion": 30, "prompt": 70}),
            turn(minute(1), tokens={"completion": 20, "estimated": True}),
            turn(minute(2)),  # nothing recorded: not a response to average
            turn(minute(3), orchestrator="baseline", tokens={"prompt": 10}),
        ],
    )
    assert monitoring.tokens_per_response(engine, *HOUR) == [
        monitoring.OrchestratorTokens("baseline", 1, 10.0),
        monitoring.OrchestratorTokens("spiralogic", 2, 60.0),
    ]


def test_quality_by_orchestrator(engine):
    insert(engine, [turn(minute(0), qualityScore=0.9), turn(minute(1), qualityScore=0.7), turn(minute(2))])
    insert(engine, [turn(minute(0), orchestrator="baseline", qualityScore=0.6)])

    rows = monitoring.quality_by_orchestrator(engine, *HOUR)

    assert rows == [
        monitoring.OrchestratorQuality("baseline", 1, 1, pytest.approx(0.6)),
        monitoring.OrchestratorQuality("spiralogic", 3, 2, pytest.approx(0.8)),
    ]


def test_the_window_aggregate_ranks_all_rows_not_per_minute_percentiles(engine):
    # Minute 0: 19 fast turns; minute 1: 1 slow one. Per minute P95s are 100 and 1000;
    # their mean would be 550. Over all 20 rows, rank 19 is still fast.
    insert(engine, [turn(minute(0), latency=100, first_token=50, qualityScore=0.5) for _ in range(19)])
    insert(engine, [turn(minute(1), latency=1000, first_token=900, error=True, cache_hit=True, mode="fallback", qualityScore=1.0)])

    aggregate = monitoring.window_aggregate(engine, *HOUR)

    assert aggregate == monitoring.Aggregate(
        count=20,
        latency_p50_ms=100,
        latency_p95_ms=100,
        first_token_p95_ms=50,
        errors=1,
        fallbacks=1,
        cache_hits=1,
        quality_scored=20,
        quality_mean=pytest.approx(0.525),
    )
    assert (aggregate.error_rate, aggregate.fallback_rate, aggregate.cache_hit_ratio) == (0.05, 0.05, 0.05)


def test_span_aggregates_may_overlap_and_may_be_empty(engine):
    insert(engine, [turn(minute(i), latency=100 * (i + 1)) for i in range(10)])

    spans = [(minute(0), minute(5)), (minute(3), minute(8)), (minute(30), minute(35))]
    first, second, empty = monitoring.span_aggregates(engine, spans)

    assert (first.count, first.latency_p50_ms, first.latency_p95_ms) == (5, 300, 500)
    assert (second.count, second.latency_p50_ms, second.latency_p95_ms) == (5, 600, 800)
    assert empty == monitoring.Aggregate()


def test_many_spans_are_queried_in_parts(engine):
    insert(engine, [turn(minute(i), latency=i) for i in range(0, 1000, 3)])

    spans = [(minute(i), minute(i + 1)) for i in range(1000)]
    aggregates = monitoring.span_aggregates(engine, spans)

    assert [a.count for a in aggregates] == [1 if i % 3 == 0 else 0 for i in range(1000)]
    assert [a.latency_p50_ms for a in aggregates[::3]] == list(range(0, 1000, 3))


def test_an_empty_window_returns_no_rows(engine):
    assert monitoring.latency_per_minute(engine, *HOUR) == []
    assert monitoring.mode_distribution(engine, *HOUR) == []
    assert monitoring.window_aggregate(engine, *HOUR) == monitoring.Aggregate()
    assert monitoring.worldview_adaptation(engine, *HOUR).match_rate is None


def test_naive_times_are_utc_and_aware_ones_are_converted(engine):
    insert(engine, [turn(minute(0))])
    later_zone = timezone(timedelta(hours=5, minutes=30))
    assert monitoring.window_aggregate(engine, T0.replace(tzinfo=None), minute(1).replace(tzinfo=None)).count == 1
    assert monitoring.window_aggregate(engine, T0.astimezone(later_zone), minute(1).astimezone(later_zone)).count == 1


# -- Agreement: the playbook's SQL, and SQLite with PostgreSQL ----------------------


@only_postgresql
def test_the_playbook_queries_and_the_functions_agree_on_postgresql(engine):
    with engine.connect() as conn:
        now = conn.execute(sa.text("SELECT now()")).scalar_one()
    rng = random.Random(7)
    ages = [timedelta(seconds=rng.uniform(5, hours * 3600)) for hours in [2] * 300 + [23] * 200]
    rows = [
        turn(
            now - age,
            mode=rng.choice(["full", "full", "full", "lite", "fallback"]),
            latency=rng.randint(20, 1200),
            cache_hit=rng.random() < 0.4,
            error=rng.random() < 0.05,
            orchestrator=rng.choice(["baseline", "spiralogic"]),
        )
        for age in ages
        # Clear of every window's edge, which moves with each query's own NOW().
        if all(abs(age - edge) > timedelta(minutes=5) for edge in (timedelta(hours=1), timedelta(hours=2)))
    ]
    insert(engine, rows + [turn(now - timedelta(days=3), latency=5000, cache_hit=True, error=True)])
    until = now + timedelta(minutes=1)

    with engine.connect() as conn:
        conn.execute(sa.text("SET TIME ZONE 'UTC'"))  # so date_trunc('hour') is a UTC hour, as in the functions
        latency = conn.execute(sa.text(LATENCY_DISTRIBUTION)).all()
        modes = conn.execute(sa.text(MODE_DISTRIBUTION)).all()
        cache = conn.execute(sa.text(CACHE_HIT_RATIO)).all()
        errors = conn.execute(sa.text(ERROR_RATE)).all()

    assert len(latency) > 60 and len(errors) > 30
    ours = monitoring.latency_per_minute(engine, now - timedelta(hours=2), until)
    assert [(r.minute, r.p50, r.p95, r.p99) for r in ours] == [tuple(row) for row in latency]
    ours = monitoring.mode_distribution(engine, now - timedelta(days=1), until)
    assert sorted((r.mode, r.count, r.percentage) for r in ours) == sorted((m, n, float(p)) for m, n, p in modes)
    ours = monitoring.cache_hit_ratio_per_hour(engine, now - timedelta(hours=24), until)
    assert [(r.hour, r.cache_hit_ratio) for r in ours] == [(hour, pytest.approx(float(ratio))) for hour, ratio in cache]
    ours = monitoring.error_rate_per_minute(engine, now - timedelta(hours=1), until)
    assert [(r.minute, r.error_rate) for r in ours] == [tuple(row) for row in errors]


@pytest.fixture
def sqlite_and_postgresql(tmp_path):
    """Two fresh, migrated databases: a SQLite file and a PostgreSQL schema."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    urls = [f"sqlite:///{tmp_path / 'agree.db'}", f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"]
    engines = []
    try:
        for url in urls:
            migrate.upgrade(url)
            engines.append(sa.create_engine(url))
        yield engines
    finally:
        for engine in engines:
            engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_sqlite_and_postgresql_agree_on_the_same_rows(sqlite_and_postgresql):
    rng = random.Random(11)
    worldviews = ["pragmatic", "spiritual", "mythopoetic-open", None]
    rows = [
        turn(
            T0 + timedelta(seconds=rng.uniform(-600, 3 * 3600)),
            user=f"user-{rng.randint(1, 30)}",
            orchestrator=rng.choice(["baseline", "spiralogic"]),
            mode=rng.choice(["full", "full", "lite", "fallback"]),
            latency=rng.choice([None, *range(20, 1500, 7)]),
            first_token=rng.randint(5, 900),
            cache_hit=rng.random() < 0.4,
            error=rng.random() < 0.05,
            qualityScore=round(rng.random(), 3),
            tokens={"completion": rng.randint(1, 300), "prompt": rng.randint(1, 300)},
            **({"worldview": wv} if (wv := rng.choice(worldviews)) else {}),
            **({"challenge": "med"} if rng.random() < 0.3 else {}),
        )
        for _ in range(600)
    ]
    challenged = [r for r in rows if "challenge" in r["metadata"]][::2]
    feedback_rows = [feedback(r, rng.choice([True, False, None])) for r in challenged]
    answers = []
    for engine in sqlite_and_postgresql:
        insert(engine, rows)
        with engine.begin() as conn:
            conn.execute(sa.insert(FEEDBACK), feedback_rows)
        window = (T0, T0 + timedelta(hours=2))
        result = {name: metric.query(engine, *window) for name, metric in monitoring.METRICS.items()}
        result["aggregate"] = monitoring.span_aggregates(engine, [(minute(i), minute(i + 5)) for i in range(0, 120, 7)], "spiralogic")
        answers.append(result)

    on_sqlite, on_postgresql = answers
    assert on_sqlite.keys() == on_postgresql.keys()
    for name in on_sqlite:
        assert on_sqlite[name] == approx_tree(on_postgresql[name]), name


def approx_tree(value):
    """Floats compared approximately (sums in another order), everything else exactly."""
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-9)
    if isinstance(value, (list, tuple)):
        return type(value)(approx_tree(item) for item in value)
    if hasattr(value, "__dataclass_fields__"):
        return type(value)(**{name: approx_tree(getattr(value, name)) for name in value.__dataclass_fields__})
    return value


# -- CLI and admin API ---------------------------------------------------------------


@pytest.fixture
def cli_database(monkeypatch, tmp_path, engine, database_url):
    """The CLI's settings point at this test's database."""
    monkeypatch.setenv("SPIRALOGIC_ENV", "testing")
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("SPIRALOGIC_DATA_DIR", str(tmp_path / "data"))
    return engine


def test_cli_metrics_prints_a_table_and_json(runner, cli_database):
    insert(cli_database, [turn(minute(0), latency=120), turn(minute(0), latency=480, orchestrator="baseline")])
    window = ["--since", T0.isoformat(), "--until", minute(60).isoformat()]

    table = runner.invoke(cli, ["metrics", "latency", *window])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[1].split() == ["minute", "p50", "p95", "p99"]
    assert lines[2].split() == ["2026-03-01T12:00:00+00:00", "120", "480", "480"]

    result = runner.invoke(cli, ["metrics", "latency", *window, "--orchestrator", "baseline", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["result"] == [{"minute": "2026-03-01T12:00:00+00:00", "p50": 480, "p95": 480, "p99": 480}]
    assert (body["since"], body["until"]) == (T0.isoformat(), minute(60).isoformat())


def test_cli_metrics_prints_summaries_and_nested_tables(runner, cli_database):
    insert(cli_database, [turn(minute(0), worldview="pragmatic"), turn(minute(1), worldview="pragmatic")])
    result = runner.invoke(cli, ["metrics", "worldview", "--since", T0.isoformat(), "--until", minute(60).isoformat()])
    assert result.exit_code == 0, result.output
    assert "matchRate: 1" in result.output
    assert "byWorldview:" in result.output
    assert "pragmatic" in result.output


def test_cli_metrics_default_window_reads_recent_turns(runner, cli_database):
    insert(cli_database, [turn(datetime.now(timezone.utc) - timedelta(minutes=10), error=True)])
    result = runner.invoke(cli, ["metrics", "errors", "--json"])
    assert result.exit_code == 0, result.output
    assert [row["errorRate"] for row in json.loads(result.output)["result"]] == [1.0]


@pytest.mark.parametrize("args", [["latency", "--since", "yesterday"], ["latency", "--since", "1h", "--until", "2h"], ["nope"]])
def test_cli_metrics_rejects_bad_arguments(runner, cli_database, args):
    result = runner.invoke(cli, ["metrics", *args])
    assert result.exit_code == 2
    assert "Error" in result.output


@pytest.fixture
def admin(make_app, database_url):
    app = make_app(database_url, admin_token=TOKEN)
    return app, app.test_client()


def get(client, path: str, **query: str):
    return client.get(path, query_string=query or None, headers={"Authorization": f"Bearer {TOKEN}"})


def test_admin_metrics_returns_json(admin):
    app, client = admin
    from spiralogic.state import app_state

    insert(app_state(app).engine, [turn(minute(0), mode="lite"), turn(minute(1)), turn(minute(2), orchestrator="baseline")])

    response = get(client, "/admin/metrics/modes", since=T0.isoformat(), until=minute(60).isoformat(), orchestrator="spiralogic")

    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["metric"] == "modes"
    assert body["orchestrator"] == "spiralogic"
    assert body["result"] == [{"mode": "full", "count": 1, "percentage": 50.0}, {"mode": "lite", "count": 1, "percentage": 50.0}]


@pytest.mark.parametrize(
    "query, field",
    [
        ("since=soon", "since"),
        ("since=1h&until=2h", "since"),
        ("until=2026-13-01", "until"),
        ("since=99999999999w", "since"),
        ("orchestrator=other", "orchestrator"),
    ],
)
def test_admin_metrics_bad_parameters_are_422(admin, query, field):
    response = get(admin[1], f"/admin/metrics/latency?{query}")
    error = response.get_json()["error"]
    assert (response.status_code, error["code"], error["field"]) == (422, "invalid_value", field)


def test_admin_metrics_unknown_parameter_and_name(admin):
    client = admin[1]
    response = get(client, "/admin/metrics/latency?sinse=2h")
    assert (response.status_code, response.get_json()["error"]["code"]) == (422, "unknown_parameter")
    response = get(client, "/admin/metrics/nope")
    assert (response.status_code, response.get_json()["error"]["code"]) == (404, "unknown_metric")


def test_admin_metrics_needs_the_token(admin):
    assert admin[1].get("/admin/metrics/latency").status_code == 401

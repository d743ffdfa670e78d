"""Alert rules: Prometheus semantics, persistence across restarts, delivery, rollback."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from test_minute_totals import spans_read
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from spiralogic.alert_metrics import metric_source
from spiralogic.alerting import AlertEngine, NotReady, Rule, step
from spiralogic.minute_totals import REREAD
from spiralogic.state import app_state
from spiralogic.tables import ConsciousnessTurnMeta

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
RULE = Rule(
    name="ErrorSpike", metric="error_rate", op=">", threshold=0.02, **{"for": 300, "window": 60},
    severity="PAGE", channel="#oncall", summary="error_rate > 2% for 5 minutes",
)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "state, since, condition, now, expected",
    [
        ("inactive", 0, True, 10, ("pending", 10)),
        ("pending", 10, True, 200, ("pending", 10)),
        ("pending", 10, True, 310, ("firing", 310)),
        ("pending", 10, False, 200, ("inactive", 200)),  # a false evaluation resets the timer
        ("firing", 310, True, 400, ("firing", 310)),
        ("firing", 310, False, 400, ("resolved", 400)),
        ("resolved", 400, True, 410, ("pending", 410)),
        ("inactive", 0, False, 10, ("inactive", 0)),
    ],
)
def test_step_follows_prometheus(state, since, condition, now, expected):
    assert step(state, at(since), condition, RULE, at(now)) == (expected[0], at(expected[1]))


@pytest.mark.parametrize("policy, expected", [("ok", "inactive"), ("keep", "pending"), ("alerting", "pending")])
def test_no_data_policy(policy, expected):
    rule = RULE.model_copy(update={"no_data": policy})
    assert step("pending", at(0), None, rule, at(100))[0] == expected


def test_a_rule_whose_metric_is_still_being_read_keeps_its_state(make_app, database_url):
    engine = app_state(make_app(database_url)).engine
    ready = [True]

    def error_rate(name, since, until, orchestrator):
        if not ready[0]:
            raise NotReady("the window's first minutes")
        return 0.5

    alerts = AlertEngine(engine, [RULE.model_copy(update={"for_s": 0})], error_rate, lambda transition: None)
    assert [t.to_state for t in alerts.evaluate(at(0))] == ["firing"]
    ready[0] = False
    assert alerts.evaluate(at(10)) == []
    assert alerts.states() == {"ErrorSpike": ("firing", at(0))}


def test_a_zero_for_fires_at_once():
    assert step("inactive", at(0), True, RULE.model_copy(update={"for_s": 0}), at(5)) == ("firing", at(5))


class Webhook:
    """A local HTTP endpoint standing in for Slack's incoming webhook."""

    def __init__(self):
        self.messages: list[dict] = []
        self.server = make_server("127.0.0.1", 0, self._app)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @Request.application
    def _app(self, request):
        self.messages.append(json.loads(request.get_data()))
        return Response("ok")


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def write_turns(engine, start: datetime, minutes: int, *, per_minute: int = 20, error_every: int = 0):
    rows = []
    for minute in range(minutes):
        for i in range(per_minute):
            resonance = {"error": ["provider:Timeout"]} if error_every and i % error_every == 0 else {}
            rows.append(
                {
                    "id": uuid.uuid4(), "user_id": f"u{i}", "orchestrator": "spiralogic", "orchestrator_mode": "full",
                    "created_at": start + timedelta(minutes=minute, seconds=i), "metadata": {"latencyMs": 200, "firstTokenMs": 80},
                    "resonance": resonance,
                }
            )
    with engine.begin() as conn:
        conn.execute(sa.insert(ConsciousnessTurnMeta.__table__), rows)


def alerts_of(app) -> AlertEngine:
    return app_state(app).alerts


def build(make_app, database_url, webhook):
    return make_app(database_url, **{"plugins.webhook.urls": {"#oncall": webhook.url, "#spiralogic-ops": webhook.url}})


def test_error_spike_goes_pending_then_fires_then_resolves(make_app, database_url, webhook):
    app = build(make_app, database_url, webhook)
    engine = app_state(app).engine
    write_turns(engine, T0, 12, error_every=5)  # 20% errors for 12 minutes
    alerts = alerts_of(app)
    states = {}
    for minute in range(1, 9):
        alerts.evaluate(T0 + timedelta(minutes=minute))
        states[minute] = alerts.states()["ErrorSpike"][0]
    assert states[1] == "pending"
    assert states[5] == "pending"  # for = 5 minutes, counted from the first true evaluation
    assert states[6] == "firing"
    write_turns(engine, T0 + timedelta(minutes=12), 2)  # healthy again
    alerts.evaluate(T0 + timedelta(minutes=14))
    assert alerts.states()["ErrorSpike"][0] == "resolved"
    spikes = [m for m in webhook.messages if "ErrorSpike" in m["text"]]
    assert [m["text"].split("]")[0] for m in spikes] == ["[FIRING", "[RESOLVED"]
    assert spikes[0]["channel"] == "#oncall" and spikes[0]["attachments"][0]["fields"][0]["value"] == "ErrorSpike"


def test_a_restart_neither_resets_the_timer_nor_pages_again(make_app, database_url, webhook):
    first = build(make_app, database_url, webhook)
    write_turns(app_state(first).engine, T0, 12, error_every=5)
    alerts_of(first).evaluate(T0 + timedelta(minutes=1))
    alerts_of(first).evaluate(T0 + timedelta(minutes=4))
    second = build(make_app, database_url, webhook)  # a new process on the same database
    alerts_of(second).evaluate(T0 + timedelta(minutes=6, seconds=30))
    assert alerts_of(second).states()["ErrorSpike"][0] == "firing"  # the timer kept running
    alerts_of(second).evaluate(T0 + timedelta(minutes=7))
    third = build(make_app, database_url, webhook)
    alerts_of(third).evaluate(T0 + timedelta(minutes=8))
    assert len([m for m in webhook.messages if "ErrorSpike" in m["text"]]) == 1


def test_no_traffic_is_no_data_not_an_alert(make_app, database_url, webhook):
    app = build(make_app, database_url, webhook)
    alerts_of(app).evaluate(T0)
    assert all(state == "inactive" for state, _ in alerts_of(app).states().values())


def test_a_rollback_trigger_aborts_the_rollout_and_latches(make_app, database_url, webhook):
    app = build(make_app, database_url, webhook)
    state = app_state(app)
    state.flags.set("phase", "beta", actor="test", reason="beta", now=T0)
    write_turns(state.engine, T0, 12, error_every=5)
    for minute in range(1, 8):
        alerts_of(app).evaluate(T0 + timedelta(minutes=minute))
    assert state.flags.all(fresh=True)["phase"] == "aborted"
    change = state.flags.audit()[0]
    assert change["actor"] == "rollback:RollbackErrors" and change["value"] == "aborted"
    write_turns(state.engine, T0 + timedelta(minutes=12), 3)
    alerts_of(app).evaluate(T0 + timedelta(minutes=15))
    assert state.flags.all(fresh=True)["phase"] == "aborted"  # latched: only an operator retries
    body = {"userId": "u", "text": "Help me find clarity"}
    client = app.test_client()
    assert client.post("/api/oracle/chat", json=body).headers["x-orchestrator"] == "baseline"
    assert client.post("/api/oracle/chat", json=body, headers={"x-experiment-spiralogic": "on"}).headers["x-orchestrator"] == "spiralogic"


def test_alert_changed_hook_sees_every_transition(make_app, database_url, webhook):
    from spiralogic import hookimpl

    class Observer:
        def __init__(self):
            self.seen = []

        @hookimpl
        def alert_changed(self, alert):
            self.seen.append((alert.rule.name, alert.to_state))

    observer = Observer()
    app = make_app(database_url, plugins=[observer])
    write_turns(app_state(app).engine, T0, 12, error_every=5)
    for minute in (1, 7):
        alerts_of(app).evaluate(T0 + timedelta(minutes=minute))
    assert ("ErrorSpike", "pending") in observer.seen and ("ErrorSpike", "firing") in observer.seen


def test_voice_queue_age_counts_jobs_still_waiting(make_app, database_url):
    from spiralogic.alert_metrics import metric_source
    from spiralogic.tables import VoiceJob

    app = make_app(database_url)
    engine = app_state(app).engine
    common = {"user_id": "v", "backend": "local", "preset": "natural", "text": "hi", "chars": 2, "memo_key": "k"}
    with engine.begin() as conn:
        conn.execute(
            sa.insert(VoiceJob.__table__),
            [
                {**common, "id": uuid.uuid4(), "status": "done", "created_at": at(0), "enqueued_at": at(0), "started_at": at(5), "queue_age_ms": 5000},
                {**common, "id": uuid.uuid4(), "status": "queued", "created_at": at(0), "enqueued_at": at(0), "started_at": None, "queue_age_ms": None},
            ],
        )
    value = metric_source(engine)("tts_queue_age_p95_s", at(0), at(120), None)
    assert value == pytest.approx(120)  # the job still waiting, not the quick one


def write_token_turns(engine, start: datetime, tokens: int, count: int = 1) -> None:
    """``count`` turns of ``tokens`` completion tokens each, a minute apart from ``start``."""
    rows = [
        {"id": uuid.uuid4(), "user_id": "t", "orchestrator": "spiralogic", "orchestrator_mode": "full",
         "created_at": start + timedelta(minutes=i), "metadata": {"latencyMs": 1, "tokens": {"completion": tokens}}, "resonance": {}}
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(ConsciousnessTurnMeta.__table__), rows)


def test_tokens_surge_compares_with_the_day_before(make_app, database_url):
    engine = app_state(make_app(database_url)).engine
    write_token_turns(engine, T0 - timedelta(hours=20), 100, 30)
    write_token_turns(engine, T0, 160, 30)
    assert read_in(metric_source(engine), "tokens_vs_24h", T0, T0 + timedelta(hours=1)) == pytest.approx(1.6)


def read_in(value, name: str, since: datetime, until: datetime) -> float | None:
    """A metric's value once its window is all read (each call reads an hour more of it)."""
    for _ in range(30):
        try:
            return value(name, since, until, None)
        except NotReady:
            pass
    raise AssertionError(f"{name} still not ready")


def test_the_token_rule_slides_its_day_exactly_and_reads_only_new_minutes(make_app, database_url):
    engine = app_state(make_app(database_url)).engine
    hour = timedelta(hours=1)
    write_token_turns(engine, T0 - 2 * hour, 100)
    write_token_turns(engine, T0 + timedelta(minutes=30), 150)
    write_token_turns(engine, T0 + timedelta(minutes=95), 200)
    spans = spans_read(engine)
    value = metric_source(engine)
    rounds = iter(T0 + timedelta(minutes=80, seconds=10 * n) for n in range(150))
    warming = 0
    for now in rounds:  # the first rounds read the day before the hour, an hour of it at a time
        try:
            assert value("tokens_vs_24h", now - hour, now, None) == 1.5
            break
        except NotReady:
            warming += 1
    assert warming == 23
    assert hour <= max(spans) <= hour + timedelta(minutes=1)
    spans.clear()
    later = list(rounds)[:75]
    surge = [value("tokens_vs_24h", now - hour, now, None) for now in later]
    # The 150-token turn leaves the hour at +90 min and is in the day before it at once.
    late = T0 + timedelta(minutes=90), T0 + timedelta(minutes=95)
    assert surge == [1.5 if now <= late[0] else None if now <= late[1] else pytest.approx(1.6) for now in later]
    # The rounds after it: the open end, and the minutes due a second read (under ten, once)
    assert max(spans) <= REREAD


def test_rules_sharing_a_window_query_it_once_per_round_and_rank_it_only_for_a_percentile(database_url, make_app):
    engine = app_state(make_app(database_url)).engine
    write_turns(engine, T0, 3, error_every=4)
    statements = []
    sa.event.listen(engine, "before_cursor_execute", lambda conn, cursor, sql, *rest: statements.append(sql))
    value = metric_source(engine)
    now = at(180)
    minute = (now - timedelta(seconds=60), now, "spiralogic")
    assert value("error_rate", *minute) == 0.25
    counted = len(statements)
    assert counted == 1  # counts alone: no percentile ranked
    assert [value(name, *minute) for name in ("latency_p95_ms", "fallback_rate")] == [200, 0.0]
    ranked = len(statements) - counted
    assert ranked > counted  # the counts again, with the latency and first-token ranks
    value("latency_p50_ms", *minute)
    value("cache_hit_rate", *minute)
    assert len(statements) == counted + ranked  # the same window in the same round: no query
    value("error_rate", now - timedelta(seconds=60), now, None)  # another orchestrator
    value("latency_p95_ms", now - timedelta(seconds=50), at(190), "spiralogic")  # the next round
    assert len(statements) == 2 * counted + 2 * ranked

"""The launch dashboard: who may see it, what its data says, and the page in a real browser."""

from __future__ import annotations

import os
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import time_machine
from live_server import LiveServer
from playwright.sync_api import sync_playwright
from test_monitoring import insert, turn

from spiralogic import gates
from spiralogic.admin_session import COOKIE
from spiralogic.clock import utcnow
from spiralogic.rollout import Move
from spiralogic.state import app_state
from spiralogic.tables import AlertEvent, AlertState

TOKEN = "dash-s3cret"
PAGE, DATA, LOGIN, LOGOUT = "/admin/dashboard", "/admin/dashboard/data", "/admin/login", "/admin/logout"
CHROMIUM = Path("/usr/bin/chromium")
# Root in a sandbox, and nothing that reaches beyond this machine.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
only_postgresql = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def signed_in(app):
    client = app.test_client()
    response = client.post(LOGIN, data={"token": TOKEN})
    assert response.status_code == 303, response.get_data(as_text=True)
    return client


@pytest.fixture
def admin_app(make_app):
    return make_app(admin_token=TOKEN)


# -- Who may see it ----------------------------------------------------------------------


def test_everything_is_hidden_without_a_configured_token(make_app):
    client = make_app().test_client()
    requests = [
        ("get", PAGE, {}), ("get", DATA, {}), ("get", LOGIN, {}), ("post", LOGOUT, {}),
        ("post", LOGIN, {"data": {"token": ""}}), ("post", LOGIN, {"data": {"token": TOKEN}}),
        ("get", PAGE, {"headers": bearer("")}), ("get", DATA, {"headers": bearer()}),
    ]  # fmt: skip
    for method, path, extra in requests:
        response = getattr(client, method)(path, **extra)
        assert response.status_code == 404, (method, path, extra)
        assert COOKIE not in response.headers.get("Set-Cookie", "")


def test_without_credentials_the_page_asks_to_sign_in_and_the_data_is_401(admin_app):
    client = admin_app.test_client()
    page = client.get(PAGE)
    assert page.status_code == 302
    assert page.headers["Location"] == LOGIN
    data = client.get(DATA)
    assert data.status_code == 401
    assert data.headers["WWW-Authenticate"] == "Bearer"
    assert data.get_json()["error"]["code"] == "unauthorized"


def test_the_bearer_token_opens_the_page_and_its_data(admin_app):
    client = admin_app.test_client()
    page = client.get(PAGE, headers=bearer())
    assert page.status_code == 200
    assert page.content_type.startswith("text/html")
    html = page.get_data(as_text=True)
    assert "vendor/uplot/uPlot.iife.min.js" in html and "dashboard.js" in html
    assert "<script>" not in html  # no inline script: the policy below would refuse it
    assert page.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert client.get(DATA, headers=bearer()).status_code == 200


def test_a_wrong_bearer_token_is_401_even_on_the_page(admin_app):
    client = admin_app.test_client()
    for path in (PAGE, DATA):
        response = client.get(path, headers=bearer("dash-s3cre"))
        assert response.status_code == 401
        assert TOKEN not in response.get_data(as_text=True)


def test_signing_in_sets_a_strict_http_only_cookie_that_opens_the_page(admin_app):
    client = admin_app.test_client()
    form = client.get(LOGIN)
    assert form.status_code == 200
    assert 'name="token"' in form.get_data(as_text=True)
    assert form.headers["Content-Security-Policy"].startswith("default-src 'self'")

    response = client.post(LOGIN, data={"token": TOKEN})

    assert response.status_code == 303
    assert response.headers["Location"] == PAGE
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert {"HttpOnly", "SameSite=Strict", "Path=/admin"} <= {part.strip() for part in cookie.split(";")}
    assert "Secure" not in cookie  # plain http here; see the https test
    assert TOKEN not in cookie
    assert client.get(PAGE).status_code == 200
    assert client.get(DATA).status_code == 200
    assert client.get(LOGIN).headers["Location"] == PAGE


def test_the_cookie_is_secure_over_https(admin_app):
    response = admin_app.test_client().post(LOGIN, data={"token": TOKEN}, base_url="https://ops.example")
    assert "Secure" in {part.strip() for part in response.headers["Set-Cookie"].split(";")}


@pytest.mark.parametrize("form", [{"token": "dash-s3cre"}, {"token": TOKEN + " "}, {"token": ""}, {}, {"token": "dásh-s3cret"}])
def test_a_wrong_sign_in_is_401_without_a_hint_or_a_cookie(admin_app, form):
    client = admin_app.test_client()
    response = client.post(LOGIN, data=form)
    assert response.status_code == 401
    text = response.get_data(as_text=True)
    assert "Sign-in failed." in text
    assert TOKEN not in text
    assert "Set-Cookie" not in response.headers
    assert client.get(PAGE).status_code == 302


def test_signing_out_clears_the_cookie(admin_app):
    client = signed_in(admin_app)
    response = client.post(LOGOUT)
    assert response.status_code == 303
    assert response.headers["Location"] == LOGIN
    assert "Max-Age=0" in response.headers["Set-Cookie"]
    assert client.get(PAGE).status_code == 302
    assert client.get(DATA).status_code == 401


def test_the_cookie_cannot_change_anything_or_read_the_rest_of_the_admin_api(admin_app):
    client = signed_in(admin_app)
    before = app_state(admin_app).rollout.status()
    for action in ("kill", "promote", "abort", "percent"):
        response = client.post(f"/admin/rollout/{action}", json={"reason": "cookie", "force": True, "percent": 50})
        assert response.status_code == 401, action
    assert client.post("/admin/cache/clear").status_code == 401
    assert client.get("/admin/status").status_code == 401
    assert client.get("/admin/rollout").status_code == 401
    assert app_state(admin_app).rollout.status() == before


def test_rotating_the_token_signs_every_browser_out(make_app, tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    before = signed_in(make_app(url, admin_token=TOKEN))
    cookie = before.get_cookie(COOKIE, path="/admin").value
    after = make_app(url, admin_token="rotated-token").test_client()
    after.set_cookie(COOKIE, cookie, path="/admin")
    assert after.get(PAGE).status_code == 302
    assert after.get(DATA).status_code == 401


def test_a_forged_or_expired_cookie_is_refused(admin_app):
    forged = admin_app.test_client()
    forged.set_cookie(COOKIE, "ImFkbWluIg.aaaaaa.bbbbbbbbbbbbbbbbbbbbbbbbbbb", path="/admin")
    assert forged.get(PAGE).status_code == 302

    with time_machine.travel(utcnow(), tick=False) as traveller:
        client = signed_in(admin_app)
        traveller.shift(timedelta(hours=11))
        assert client.get(DATA).status_code == 200
        traveller.shift(timedelta(hours=2))
        assert client.get(DATA).status_code == 401


# -- What the data says ------------------------------------------------------------------


@pytest.fixture
def recent(make_app, database_url):
    """An admin app with 20 spiralogic turns in one minute and 4 baseline turns in the next,
    three minutes ago: inside the default window and the gates' hold window."""
    app = make_app(database_url, admin_token=TOKEN, **{"rollout.percent": 30})
    start = utcnow().replace(second=0, microsecond=0) - timedelta(minutes=3)
    candidate = [
        turn(
            start + timedelta(seconds=i),
            latency=10 * (i + 1),
            first_token=i + 1,
            error=i == 0,
            cache_hit=i % 2 == 0,
            mode="fallback" if i < 2 else "lite" if i < 6 else "full",
        )
        for i in range(20)
    ]
    later = start + timedelta(minutes=1)
    control = [turn(later + timedelta(seconds=i), orchestrator="baseline", latency=1000, cache_hit=True) for i in range(4)]
    insert(app_state(app).engine, candidate + control)
    return app, start, candidate + control


def data(app, **query):
    response = app.test_client().get(DATA, query_string=query, headers=bearer())
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_the_data_has_every_series_over_the_window(recent):
    app, start, rows = recent
    body = data(app)

    until = datetime.fromisoformat(body["window"]["until"])
    assert body["window"]["seconds"] == 7200
    assert datetime.fromisoformat(body["window"]["since"]) == until - timedelta(hours=2)
    assert body["orchestrator"] is None
    first, second = start.isoformat(), (start + timedelta(minutes=1)).isoformat()
    assert body["latency"] == [
        {"minute": first, "p50": 100, "p95": 190, "p99": 200},  # nearest rank over 10..200
        {"minute": second, "p50": 1000, "p95": 1000, "p99": 1000},
    ]
    assert body["firstToken"] == [{"minute": first, "p95": 19}, {"minute": second, "p95": 100}]
    assert body["errors"] == [
        {"minute": first, "turns": 20, "errors": 1, "errorRate": 0.05},
        {"minute": second, "turns": 4, "errors": 0, "errorRate": 0.0},
    ]
    assert body["fallback"] == [
        {"minute": first, "turns": 20, "fallbacks": 2, "fallbackRate": 0.1},
        {"minute": second, "turns": 4, "fallbacks": 0, "fallbackRate": 0.0},
    ]
    hours = Counter(row["created_at"].replace(minute=0, second=0) for row in rows)
    hits = Counter(row["created_at"].replace(minute=0, second=0) for row in rows if "cache_hit" in row["resonance"])
    assert body["cache"] == [
        {"hour": hour.isoformat(), "turns": n, "cacheHits": hits[hour], "cacheHitRatio": hits[hour] / n}
        for hour, n in sorted(hours.items())
    ]
    assert body["modes"] == [
        {"mode": "full", "count": 18, "percentage": 75.0},
        {"mode": "lite", "count": 4, "percentage": 16.67},
        {"mode": "fallback", "count": 2, "percentage": 8.33},
    ]


def test_the_data_judges_the_promotion_gates(recent):
    app, _, _ = recent
    verdict = data(app)["gates"]
    assert verdict["holding"] is False
    assert (verdict["requests"], verdict["baselineRequests"]) == (20, 4)
    assert [gate["name"] for gate in verdict["gates"]] == [gate.name for gate in gates.load_gates().gates]
    by_name = {gate["name"]: gate for gate in verdict["gates"]}
    assert by_name["error_rate"]["value"] == 5.0 and by_name["error_rate"]["verdict"] == "failed"
    assert by_name["p95_latency"]["value"] == 190 and by_name["p95_latency"]["verdict"] == "successful"
    assert any("candidate turns in the window" in reason for reason in verdict["reasons"])
    assert len(verdict["samples"]) == gates.load_gates().evaluation.hold_minutes


def test_the_data_keeps_one_cohort_and_a_chosen_window(recent):
    app, start, _ = recent
    body = data(app, orchestrator="baseline", window="30m")
    assert body["window"]["seconds"] == 1800
    assert body["orchestrator"] == "baseline"
    assert body["modes"] == [{"mode": "full", "count": 4, "percentage": 100.0}]
    assert [row["minute"] for row in body["latency"]] == [(start + timedelta(minutes=1)).isoformat()]


@pytest.mark.parametrize(
    "query", [{"window": "1m"}, {"window": "2d"}, {"window": "soon"}, {"window": "-1h"}, {"orchestrator": "other"}]
)
def test_bad_parameters_are_422_naming_them(admin_app, query):
    response = admin_app.test_client().get(DATA, query_string=query, headers=bearer())
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert (error["code"], error["field"]) == ("invalid_value", next(iter(query)))


def test_the_data_shows_the_rollout_the_mode_and_their_recent_changes(recent):
    app, _, _ = recent
    state = app_state(app)

    initial = data(app)
    assert {key: initial["rollout"][key] for key in ("phase", "percent", "percentSource", "killSwitch")} == {
        "phase": "baseline", "percent": 30, "percentSource": "settings", "killSwitch": False,
    }  # fmt: skip
    assert initial["mode"] == {"current": "full", "reason": "initial", "since": None, "transitions": []}

    now = utcnow()
    state.rollout.set_percent(12.5, Move("operator:test", "widen the cohort", now))
    state.rollout.kill(Move("operator:test", "bad answers", now))
    state.modes.transition("lite", "first tokens slow", actor="controller", now=now)
    body = data(app)

    assert {key: body["rollout"][key] for key in ("phase", "percent", "percentSource", "killSwitch")} == {
        "phase": "baseline", "percent": 12.5, "percentSource": "flag", "killSwitch": True,
    }  # fmt: skip
    assert [(row["key"], row["value"], row["actor"], row["reason"]) for row in body["rollout"]["history"]] == [
        ("kill_switch", True, "operator:test", "bad answers"),
        ("percent", 12.5, "operator:test", "widen the cohort"),
    ]
    assert body["mode"]["current"] == "lite"
    assert body["mode"]["reason"] == "first tokens slow"
    assert datetime.fromisoformat(body["mode"]["since"]) == now
    [transition] = body["mode"]["transitions"]
    assert (transition["from_mode"], transition["to_mode"], transition["actor"]) == ("full", "lite", "controller")


def test_the_data_lists_firing_then_pending_alerts_with_their_rules(recent):
    app, _, _ = recent
    state = app_state(app)
    firing, pending, quiet = state.alerts.rules[:3]
    now = utcnow()
    rows = [
        {"name": pending.name, "state": "pending", "since": now - timedelta(minutes=1)},
        {"name": firing.name, "state": "firing", "since": now - timedelta(minutes=2)},
        {"name": quiet.name, "state": "inactive", "since": now - timedelta(minutes=3)},
        {"name": "RetiredRule", "state": "firing", "since": now - timedelta(minutes=4)},
    ]
    with state.engine.begin() as conn:
        conn.execute(sa.insert(AlertState.__table__), [{**row, "value": 1.0, "evaluated_at": now} for row in rows])
        conn.execute(
            sa.insert(AlertEvent.__table__),
            [{"at": now, "name": firing.name, "from_state": "pending", "to_state": "firing", "value": 2.5, "summary": "paged"}],
        )

    alerts = data(app)["alerts"]

    assert [(alert["name"], alert["state"]) for alert in alerts["active"]] == [
        ("RetiredRule", "firing"),
        (firing.name, "firing"),
        (pending.name, "pending"),
    ]
    assert alerts["active"][0]["severity"] is None  # its rule is gone from config/alerts.toml
    assert (alerts["active"][1]["severity"], alerts["active"][1]["summary"]) == (firing.severity, firing.summary)
    [event] = alerts["events"]
    assert (event["name"], event["from_state"], event["to_state"], event["value"]) == (firing.name, "pending", "firing", 2.5)


# -- The page in a real browser ----------------------------------------------------------


@pytest.fixture
def chromium() -> str:
    """The system Chromium; its absence fails the test unless SPIRALOGIC_SKIP_BROWSER=1."""
    if os.environ.get("SPIRALOGIC_SKIP_BROWSER") == "1":
        pytest.skip("SPIRALOGIC_SKIP_BROWSER=1")
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the dashboard's browser test needs Debian's chromium package "
            "(apt-get install chromium), or set SPIRALOGIC_SKIP_BROWSER=1 to skip it"
        )
    return str(CHROMIUM)


def half_hour_of_turns(end: datetime) -> list[dict]:
    """Six turns in each whole minute of the half hour before ``end``: every chart draws a line."""
    rows = []
    for minute in range(30):
        for k in range(6):
            at = end - timedelta(minutes=30 - minute) + timedelta(seconds=10 * k)
            latency = 150 + 10 * minute + 40 * k
            mode = "lite" if k == 5 else "fallback" if minute % 9 == 0 and k == 4 else "full"
            error = minute % 7 == 0 and k == 0
            rows.append(turn(at, latency=latency, first_token=latency // 3, cache_hit=k % 2 == 0, error=error, mode=mode))
    return rows


@pytest.mark.server
@only_postgresql
def test_the_dashboard_in_a_browser(chromium, tmp_path, database_url):
    with LiveServer(tmp_path, database_url, env={"SPIRALOGIC_ADMIN_TOKEN": TOKEN}) as server:
        engine = sa.create_engine(database_url)
        insert(engine, half_hour_of_turns(utcnow().replace(second=0, microsecond=0)))
        engine.dispose()
        problems: list[str] = []

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            # A script or style refused by the page's policy shows as a console error.
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("response", lambda answer: problems.append(f"{answer.status} {answer.url}") if answer.status >= 400 else None)

            page.goto(f"{server.url}{PAGE}")
            assert page.url == f"{server.url}{LOGIN}"
            page.fill("#token", TOKEN)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}{PAGE}")

            page.wait_for_function("() => window.launchDashboard && window.launchDashboard.charts.latency.data[0].length > 0")
            lengths = page.evaluate(
                "() => Object.fromEntries(Object.entries(window.launchDashboard.charts)"
                ".map(([name, chart]) => [name, chart.data.map((series) => series.length)]))"
            )
            assert set(lengths) == {"latency", "firstToken", "rates", "cache"}
            for name, series in lengths.items():
                assert min(series) > 0, (name, series)
            assert lengths["latency"][0] >= 25  # a point for (nearly) every minute of the half hour
            assert page.text_content("#phase") == "baseline"
            assert page.text_content("#verdict") in ("HOLDING", "NOT HOLDING")
            assert page.locator("#gates tr").count() == len(gates.load_gates().gates)
            assert page.locator("#modes tr").count() == 3
            assert page.locator("#samples span").count() == gates.load_gates().evaluation.hold_minutes

            # It refreshes on its own: a change made over the admin API shows without a reload.
            moved = httpx.post(f"{server.url}/admin/rollout/kill", json={"reason": "browser test"}, headers=bearer())
            assert moved.status_code == 200, moved.text
            page.wait_for_function("() => document.getElementById('kill-switch').textContent === 'ON'", timeout=25_000)
            assert page.text_content("#rollout-history tr td:nth-child(2)") == "kill_switch"

            screenshot = tmp_path / "dashboard.png"
            page.screenshot(path=str(screenshot), full_page=True)
            assert screenshot.stat().st_size > 30_000

            page.click("text=Sign out")
            page.wait_for_url(f"{server.url}{LOGIN}")
            page.goto(f"{server.url}{PAGE}")
            assert page.url == f"{server.url}{LOGIN}"
            browser.close()

        assert problems == []

"""Per-user daily TTS quota: a warning at 80%, a stop at 100%, a fresh start the next day,
one counter for every app on the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import socket
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from voice_support import Clock, with_clock

from spiralogic.state import app_state
from spiralogic.tables import VoiceJob

pytestmark = pytest.mark.postgres
LIMIT = 1000


def speak(service, chars: int, user: str = "u1") -> dict:
    return service.request(user, str(uuid.uuid4()), "a" * chars)


@pytest.fixture
def voiced(make_app, database_url):
    """Apps on one database, each with the test's clock and a 1000-character quota."""
    clock = Clock()

    def build(**overrides):
        app = make_app(database_url, **{"voice.daily_char_quota": LIMIT, "voice.memo_window_s": 0, **overrides})
        return app, with_clock(app, clock)

    build.clock = clock
    return build


def test_warns_from_80_percent_and_stops_at_100(voiced):
    _, service = voiced()
    assert speak(service, 400)["quota"] == {"used": 400, "limit": LIMIT, "warning": False}
    assert speak(service, 400)["quota"] == {"used": 800, "limit": LIMIT, "warning": True}
    refused = speak(service, 201)
    assert refused == {"status": "quota_exceeded", "quota": {"used": 800, "limit": LIMIT, "warning": True}}
    assert speak(service, 200)["status"] == "queued"  # exactly 100% still fits
    assert speak(service, 1) == {"status": "quota_exceeded", "quota": {"used": LIMIT, "limit": LIMIT, "warning": True}}


def test_a_refused_request_queues_no_job(voiced):
    app, service = voiced()
    speak(service, 900)
    speak(service, 200)
    with app_state(app).engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(VoiceJob.__table__)).scalar_one() == 1


def test_the_next_day_starts_from_zero(voiced):
    _, service = voiced()
    speak(service, LIMIT)
    assert speak(service, 1)["status"] == "quota_exceeded"
    voiced.clock.advance(hours=15)  # 09:00 + 15 h: past midnight UTC
    assert speak(service, 300)["quota"] == {"used": 300, "limit": LIMIT, "warning": False}


def test_users_have_separate_quotas(voiced):
    _, service = voiced()
    speak(service, LIMIT, user="alice")
    assert speak(service, 10, user="bob")["quota"]["used"] == 10


def test_two_apps_on_one_database_share_the_counter(voiced):
    _, first = voiced()
    _, second = voiced()
    speak(first, 700)
    assert speak(second, 200)["quota"] == {"used": 900, "limit": LIMIT, "warning": True}
    assert speak(first, 200)["status"] == "quota_exceeded"


def test_concurrent_requests_never_pass_the_limit(voiced):
    _, service = voiced()
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda _: speak(service, 100), range(20)))
    assert sum(answer["status"] == "queued" for answer in answers) == 10
    assert speak(service, 1)["quota"]["used"] == LIMIT


def test_the_chat_answer_carries_the_quota(voiced):
    app, _ = voiced(**{"voice.daily_char_quota": 20})
    body = {"userId": "q", "text": "Help me find clarity", "voice": True}
    data = app.test_client().post("/api/oracle/chat", json=body).get_json()["data"]
    assert data["voice"]["status"] == "quota_exceeded"
    assert data["voice"]["quota"] == {"used": 0, "limit": 20, "warning": True}
    assert data["message"]  # the turn itself is answered as usual


def test_the_warning_is_counted_in_statsd(voiced):
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(2)
    try:
        _, service = voiced(**{"statsd.host": "127.0.0.1", "statsd.port": collector.getsockname()[1], "statsd.prefix": "sl"})
        speak(service, 850)
        speak(service, 200)
        lines = []
        while not {"sl.voice.quota.warning:1|c", "sl.voice.quota.exceeded:1|c"} <= set(lines):
            lines.extend(collector.recv(65536).decode().splitlines())
    finally:
        collector.close()
    assert "sl.voice.chars.requested:850|c" in lines

"""Voice job rows on SQLite and PostgreSQL: every job moves queued -> running -> done|failed once."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from voice_support import START

from spiralogic import migrate
from spiralogic.db import create_engine
from spiralogic.tables import VoiceAudio, VoiceJob
from spiralogic.voice.store import Audio, JobStore, utc
from spiralogic.voice.text import memo_key

pytestmark = pytest.mark.postgres
LEASE_S = 30


@pytest.fixture
def store(database_url):
    migrate.upgrade(database_url)
    engine = create_engine(database_url)
    yield JobStore(engine)
    engine.dispose()


def queue(store: JobStore, text: str = "Breathe in.", now=START, **job) -> uuid.UUID:
    values = {"user_id": "u1", "turn_id": uuid.uuid4(), "backend": "local", "preset": "natural", **job}
    with store.engine.begin() as conn:
        key = memo_key("local", "natural", text)
        return store.insert(conn, status="queued", now=now, text=text, chars=len(text), memo_key=key, **values)


def test_a_job_is_claimed_once_and_its_queue_age_recorded_at_the_first_start(store):
    job_id = queue(store)
    job = store.claim(job_id, "w1", START + timedelta(seconds=12), LEASE_S)
    assert job["status"] == "running" and job["attempts"] == 1 and job["queue_age_ms"] == 12000
    assert store.claim(job_id, "w2", START + timedelta(seconds=13), LEASE_S) is None  # held under its lease
    assert store.get(job_id)["queue_age_ms"] == 12000


def test_a_finished_job_delivered_again_does_nothing(store):
    job_id = queue(store)
    job = store.claim(job_id, "w1", START, LEASE_S)
    assert store.finish(job, "w1", START + timedelta(seconds=1), audio=Audio(b"RIFF....", "audio/wav"), cost_usd=0.0)
    assert store.claim(job_id, "w1", START + timedelta(hours=1), LEASE_S) is None
    finished = store.get(job_id)
    assert finished["status"] == "done" and finished["attempts"] == 1 and finished["text"] == ""
    assert finished["audio"] == {"content_type": "audio/wav", "bytes": 8}
    assert store.audio(job_id) == Audio(b"RIFF....", "audio/wav")


def test_a_lapsed_lease_returns_the_job_and_its_old_holder_cannot_finish_it(store):
    job_id = queue(store)
    stalled = store.claim(job_id, "w1", START, LEASE_S)
    later = START + timedelta(seconds=LEASE_S + 1)
    assert store.recover(later, requeue_after_s=600, max_attempts=3) == [job_id]
    taken = store.claim(job_id, "w2", later, LEASE_S)
    assert taken["attempts"] == 2 and taken["queue_age_ms"] == 0  # measured at the first start only
    assert not store.finish(stalled, "w1", later, audio=Audio(b"late", "audio/wav"), cost_usd=0.0)
    assert store.finish(taken, "w2", later, audio=Audio(b"on time", "audio/wav"), cost_usd=0.0)
    assert store.audio(job_id).data == b"on time"


def test_a_renewed_lease_keeps_the_job_with_its_holder(store):
    job_id = queue(store)
    store.claim(job_id, "w1", START, LEASE_S)
    assert store.renew(job_id, "w1", START + timedelta(seconds=20), LEASE_S)
    assert store.recover(START + timedelta(seconds=LEASE_S + 1), requeue_after_s=600, max_attempts=3) == []
    assert not store.renew(job_id, "w2", START, LEASE_S)


def test_a_job_whose_worker_keeps_dying_ends_failed(store):
    job_id = queue(store)
    now = START
    for _attempt in range(2):
        store.claim(job_id, "w", now, LEASE_S)
        now += timedelta(seconds=LEASE_S + 1)
        store.recover(now, requeue_after_s=600, max_attempts=2)
    failed = store.get(job_id)
    assert (failed["status"], failed["attempts"]) == ("failed", 2)
    assert "worker stopped" in failed["error"]


def test_a_queued_job_nobody_started_is_handed_out_again(store):
    job_id = queue(store)
    assert store.recover(START + timedelta(seconds=599), requeue_after_s=600, max_attempts=3) == []
    assert store.recover(START + timedelta(seconds=601), requeue_after_s=600, max_attempts=3) == [job_id]
    # Handed out now: not again until another requeue_after_s has passed.
    assert store.recover(START + timedelta(seconds=602), requeue_after_s=600, max_attempts=3) == []


def test_a_failed_attempt_is_retried_later_or_ends_failed(store):
    job_id = queue(store)
    job = store.claim(job_id, "w", START, LEASE_S)
    assert store.give_back(job, "w", START, "HTTPStatusError: 503", retry_at=START + timedelta(seconds=5))
    retrying = store.get(job_id)
    assert retrying["status"] == "queued" and utc(retrying["enqueued_at"]) == START + timedelta(seconds=5)
    job = store.claim(job_id, "w", START + timedelta(seconds=5), LEASE_S)
    assert store.give_back(job, "w", START + timedelta(seconds=6), "HTTPStatusError: 503", retry_at=None)
    failed = store.get(job_id)
    assert (failed["status"], failed["attempts"], failed["error"], failed["text"]) == ("failed", 2, "HTTPStatusError: 503", "")


def test_queue_ages_count_started_jobs_in_the_window_and_jobs_still_waiting(store):
    started = queue(store, "One.")
    store.claim(started, "w", START + timedelta(seconds=90), LEASE_S)
    queue(store, "Two.", now=START + timedelta(seconds=60))
    ages = store.queue_ages_ms(START + timedelta(seconds=100), window_s=300)
    assert sorted(ages) == [40000, 90000]
    assert store.queue_ages_ms(START + timedelta(seconds=500), window_s=300) == [440000]  # only the waiting one
    assert store.depth() == 1


def test_purge_forgets_old_finished_jobs_and_audio_nobody_refers_to(store):
    old = queue(store, "Old.")
    job = store.claim(old, "w", START, LEASE_S)
    store.finish(job, "w", START, audio=Audio(b"old", "audio/wav"), cost_usd=0.0)
    waiting = queue(store, "Waiting.")
    store.purge(START + timedelta(days=2))
    assert store.get(old) is None and store.get(waiting) is not None
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(VoiceAudio.__table__)).scalar_one() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(VoiceJob.__table__)).scalar_one() == 1


def test_daily_synthesis_sums_characters_and_cost_per_backend_without_memo_hits(store):
    for text, backend, cost in (("Twelve chars", "elevenlabs", 0.0036), ("Six ch", "elevenlabs", 0.0018), ("Local one.", "local", 0.0)):
        job = store.claim(queue(store, text, backend=backend), "w", START, LEASE_S)
        store.finish(job, "w", START + timedelta(seconds=1), audio=Audio(b"a", "audio/mpeg"), cost_usd=cost)
    with store.engine.begin() as conn:
        memo_hit = {"user_id": "u", "turn_id": None, "backend": "elevenlabs", "preset": "natural", "memo_key": "k"}
        store.insert(conn, status="done", now=START, text="Six ch", chars=6, **memo_hit)
    assert store.daily_synthesis(START.date()) == [
        {"backend": "elevenlabs", "jobs": 3, "chars": 18, "cost_usd": 0.0054},
        {"backend": "local", "jobs": 1, "chars": 10, "cost_usd": 0.0},
    ]
    assert store.daily_synthesis((START + timedelta(days=1)).date()) == []

"""Voice jobs and their audio in the database: the source of truth of every job.

Every state change is one conditional statement, so the queue may deliver a
job twice, a crashed worker's job may be handed out again, and a late worker
may try to finish a job another already finished: each job still moves
queued -> running -> done|failed once, as its user sees it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from spiralogic.tables import VoiceAudio, VoiceJob

JOBS = VoiceJob.__table__
AUDIO = VoiceAudio.__table__
ERROR_CHARS = 500


@dataclass(frozen=True)
class Audio:
    data: bytes
    content_type: str


def utc(moment: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; every stored time is UTC."""
    return moment if moment is None or moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=timezone.utc)
    return start, start + timedelta(days=1)


def _upsert(dialect: str):
    return {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]


class JobStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    # -- The request side ------------------------------------------------------

    @staticmethod
    def fresh_audio_exists(conn: Connection, key: str, since: datetime) -> bool:
        query = sa.select(AUDIO.c.key).where(AUDIO.c.key == key, AUDIO.c.created_at >= since)
        return conn.execute(query).first() is not None

    @staticmethod
    def insert(conn: Connection, *, status: str, now: datetime, **job: Any) -> uuid.UUID:
        """A new job, ``queued`` (for the worker) or already ``done`` (its audio was memoized)."""
        job_id = uuid.uuid4()
        done = status == "done"
        conn.execute(
            sa.insert(JOBS).values(
                id=job_id,
                status=status,
                memo_hit=done,
                attempts=0,
                enqueued_at=now,
                created_at=now,
                finished_at=now if done else None,
                cost_usd=0.0 if done else None,
                **({**job, "text": ""} if done else job),
            )
        )
        return job_id

    def get(self, job_id: uuid.UUID) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(JOBS).where(JOBS.c.id == job_id)).mappings().first()
            if row is None:
                return None
            job = dict(row)
            audio = conn.execute(
                sa.select(AUDIO.c.content_type, sa.func.length(AUDIO.c.audio).label("bytes")).where(AUDIO.c.key == job["memo_key"])
            ).first()
        job["audio"] = dict(audio._mapping) if audio and job["status"] == "done" else None
        return job

    def audio(self, job_id: uuid.UUID) -> Audio | None:
        """A done job's audio; None if the job is not done or its audio was purged."""
        query = (
            sa.select(AUDIO.c.audio, AUDIO.c.content_type)
            .join(JOBS, JOBS.c.memo_key == AUDIO.c.key)
            .where(JOBS.c.id == job_id, JOBS.c.status == "done")
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return Audio(bytes(row.audio), row.content_type) if row else None

    # -- The worker side -------------------------------------------------------

    def claim(self, job_id: uuid.UUID, worker: str, now: datetime, lease_s: float) -> dict[str, Any] | None:
        """Take the job if it is queued (or its holder's lease lapsed); None if it is not ours to run.

        The first start records ``queue_age_ms``, the backlog alert's measure.
        """
        claimable = sa.or_(JOBS.c.status == "queued", sa.and_(JOBS.c.status == "running", JOBS.c.lease_until < now))
        with self.engine.begin() as conn:
            row = conn.execute(
                sa.update(JOBS)
                .where(JOBS.c.id == job_id, claimable)
                .values(
                    status="running",
                    attempts=JOBS.c.attempts + 1,
                    claimed_by=worker,
                    lease_until=now + timedelta(seconds=lease_s),
                    started_at=sa.func.coalesce(JOBS.c.started_at, now),
                )
                .returning(*JOBS.c)
            ).mappings().first()
            if row is None:
                return None
            job = dict(row)
            if job["queue_age_ms"] is None:
                job["queue_age_ms"] = max(0, round((utc(job["started_at"]) - utc(job["created_at"])).total_seconds() * 1000))
                conn.execute(sa.update(JOBS).where(JOBS.c.id == job_id).values(queue_age_ms=job["queue_age_ms"]))
        return job

    def renew(self, job_id: uuid.UUID, worker: str, now: datetime, lease_s: float) -> bool:
        with self.engine.begin() as conn:
            renewed = conn.execute(
                sa.update(JOBS)
                .where(JOBS.c.id == job_id, JOBS.c.status == "running", JOBS.c.claimed_by == worker)
                .values(lease_until=now + timedelta(seconds=lease_s))
            )
        return renewed.rowcount == 1

    def fresh_audio(self, key: str, since: datetime) -> bool:
        with self.engine.connect() as conn:
            return self.fresh_audio_exists(conn, key, since)

    def finish(self, job: dict[str, Any], worker: str, now: datetime, *, audio: Audio | None, cost_usd: float) -> bool:
        """Mark the job done (storing its audio unless it was memoized); False if it was not ours any more."""
        with self.engine.begin() as conn:
            done = conn.execute(
                sa.update(JOBS)
                .where(JOBS.c.id == job["id"], JOBS.c.status == "running", JOBS.c.claimed_by == worker)
                .values(status="done", finished_at=now, memo_hit=audio is None, cost_usd=cost_usd, text="", lease_until=None, error=None)
            )
            if done.rowcount != 1:
                return False
            if audio is not None:
                self._save_audio(conn, job, audio, now)
        return True

    @staticmethod
    def _save_audio(conn: Connection, job: dict[str, Any], audio: Audio, now: datetime) -> None:
        fresh = {"content_type": audio.content_type, "audio": audio.data, "created_at": now}
        statement = _upsert(conn.dialect.name)(AUDIO).values(key=job["memo_key"], backend=job["backend"], preset=job["preset"], **fresh)
        conn.execute(statement.on_conflict_do_update(index_elements=["key"], set_=fresh))

    def give_back(self, job: dict[str, Any], worker: str, now: datetime, error: str, retry_at: datetime | None) -> bool:
        """After a failed attempt: queue the job again for ``retry_at``, or (None) end it ``failed``."""
        values: dict[str, Any] = {"error": error[:ERROR_CHARS], "claimed_by": None, "lease_until": None}
        if retry_at is None:
            values.update(status="failed", finished_at=now, text="")
        else:
            values.update(status="queued", enqueued_at=retry_at)
        with self.engine.begin() as conn:
            updated = conn.execute(
                sa.update(JOBS).where(JOBS.c.id == job["id"], JOBS.c.status == "running", JOBS.c.claimed_by == worker).values(**values)
            )
        return updated.rowcount == 1

    # -- Maintenance -----------------------------------------------------------

    def recover(self, now: datetime, requeue_after_s: float, max_attempts: int) -> list[uuid.UUID]:
        """Jobs whose message is presumed lost, to hand to the queue again.

        A running job whose lease lapsed (its worker died) goes back to queued,
        or ends failed once it has had every attempt; a queued job not started
        ``requeue_after_s`` after it was queued is handed out again. Both are
        safe to deliver twice: claiming is conditional.
        """
        lapsed = sa.and_(JOBS.c.status == "running", JOBS.c.lease_until < now)
        lost = "the worker stopped during synthesis"
        with self.engine.begin() as conn:
            rows = conn.execute(sa.select(JOBS.c.id, JOBS.c.attempts).where(lapsed)).all()
            exhausted = [row.id for row in rows if row.attempts >= max_attempts]
            retried = [row.id for row in rows if row.attempts < max_attempts]
            released = {"claimed_by": None, "lease_until": None}
            conn.execute(
                sa.update(JOBS)
                .where(JOBS.c.id.in_(exhausted), lapsed)
                .values(status="failed", finished_at=now, text="", error=f"{lost} ({max_attempts} attempts)", **released)
            )
            conn.execute(
                sa.update(JOBS).where(JOBS.c.id.in_(retried), lapsed).values(status="queued", enqueued_at=now, error=lost, **released)
            )
            stale = sa.and_(JOBS.c.status == "queued", JOBS.c.enqueued_at < now - timedelta(seconds=requeue_after_s))
            requeued = [row.id for row in conn.execute(sa.select(JOBS.c.id).where(stale))]
            conn.execute(sa.update(JOBS).where(JOBS.c.id.in_(requeued), stale).values(enqueued_at=now))
        return retried + requeued

    def purge(self, before: datetime) -> int:
        """Forget finished jobs created before ``before``, then audio no job refers to."""
        with self.engine.begin() as conn:
            jobs = conn.execute(sa.delete(JOBS).where(JOBS.c.status.in_(("done", "failed")), JOBS.c.created_at < before)).rowcount
            referenced = sa.select(JOBS.c.memo_key)
            conn.execute(sa.delete(AUDIO).where(AUDIO.c.created_at < before, AUDIO.c.key.not_in(referenced)))
        return jobs

    def depth(self) -> int:
        """Jobs waiting to run (retries waiting for their backoff included)."""
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(JOBS).where(JOBS.c.status == "queued")).scalar_one()

    def queue_ages_ms(self, now: datetime, window_s: float) -> list[int]:
        """How long jobs waited for a worker: those that started within the window, and
        those still waiting for their first start (a stalled worker starts none)."""
        since = now - timedelta(seconds=window_s)
        with self.engine.connect() as conn:
            started = conn.execute(sa.select(JOBS.c.queue_age_ms).where(JOBS.c.started_at >= since, JOBS.c.queue_age_ms.is_not(None)))
            ages = [row.queue_age_ms for row in started]
            waiting = conn.execute(sa.select(JOBS.c.created_at).where(JOBS.c.status == "queued", JOBS.c.attempts == 0))
            ages += [max(0, round((now - utc(row.created_at)).total_seconds() * 1000)) for row in waiting]
        return ages

    def daily_synthesis(self, day: date) -> list[dict[str, Any]]:
        """Per backend: characters sent to it on ``day`` (UTC; memo hits cost nothing) and their estimated cost."""
        start, end = day_bounds(day)
        query = (
            sa.select(
                JOBS.c.backend,
                sa.func.count().label("jobs"),
                sa.func.sum(sa.case((JOBS.c.memo_hit, 0), else_=JOBS.c.chars)).label("chars"),
                sa.func.sum(JOBS.c.cost_usd).label("cost_usd"),
            )
            .where(JOBS.c.status == "done", JOBS.c.finished_at >= start, JOBS.c.finished_at < end)
            .group_by(JOBS.c.backend)
            .order_by(JOBS.c.backend)
        )
        with self.engine.connect() as conn:
            return [
                {"backend": row.backend, "jobs": row.jobs, "chars": int(row.chars or 0), "cost_usd": round(float(row.cost_usd or 0), 6)}
                for row in conn.execute(query)
            ]

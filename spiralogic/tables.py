"""SQLAlchemy models of the service's tables. Alembic migrations create them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, Index, Integer, LargeBinary, String, Text, Uuid, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.expression import ColumnElement

# JSONB on PostgreSQL so the playbook's queries (->>, ?) run unchanged.
JsonDocument = JSON().with_variant(JSONB(), "postgresql")


class TopResonance(ColumnElement):
    """``resonance ->> 'top'``, written the way each database indexes it."""

    inherit_cache = True


@compiles(TopResonance, "postgresql")
def _top_resonance_postgresql(element, compiler, **kw):
    return "(resonance ->> 'top')"


@compiles(TopResonance)
def _top_resonance_default(element, compiler, **kw):
    return "json_extract(resonance, '$.top')"


class Base(DeclarativeBase):
    pass


class ConsciousnessTurnMeta(Base):
    """One row per chat turn: who, which orchestrator and mode, and how it went.

    ``metadata`` holds measurements (latencyMs, firstTokenMs, tokens, requestId,
    ...). ``resonance`` holds keys only when they apply (``cache_hit``,
    ``error``, ``top``): the monitoring queries test key presence.
    """

    __tablename__ = "consciousness_turn_meta"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    session_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    orchestrator: Mapped[str] = mapped_column(String(32), nullable=False)
    orchestrator_mode: Mapped[str] = mapped_column(String(16), nullable=False)
    element: Mapped[str | None] = mapped_column(String(16))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JsonDocument, nullable=False, default=dict)
    resonance: Mapped[dict[str, Any]] = mapped_column(JsonDocument, nullable=False, default=dict)

    __table_args__ = (
        Index("idx_ctm_user_created", "user_id", created_at.desc()),
        Index("idx_ctm_top_resonance", TopResonance()),
        Index("idx_ctm_created", "created_at"),
    )


class RuntimeFlag(Base):
    """An operator switch shared by every worker and host (forced mode, lite by default, ...)."""

    __tablename__ = "runtime_flags"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JsonDocument, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_by: Mapped[str] = mapped_column(String(128), nullable=False)
    reason: Mapped[str] = mapped_column(String(500), nullable=False, default="")


class ServiceMode(Base):
    """The service-level mode (full, lite, fallback): one row, read by every worker."""

    __tablename__ = "service_mode"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    mode: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(String(500), nullable=False)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class ModeTransition(Base):
    """Every change of the service mode, with its reason and who made it."""

    __tablename__ = "mode_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    from_mode: Mapped[str] = mapped_column(String(16), nullable=False)
    to_mode: Mapped[str] = mapped_column(String(16), nullable=False)
    reason: Mapped[str] = mapped_column(String(500), nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)


class Lease(Base):
    """A named lease: at most one holder (e.g. the evaluator loop) until it expires."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class Feedback(Base):
    """A user's rating of one turn, and whether they took up its challenge.

    Challenge consent is read from here: escalation needs neutral-or-better
    feedback on the user's previous challenge.
    """

    __tablename__ = "feedback"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    turn_id: Mapped[uuid.UUID] = mapped_column(Uuid, nullable=False)
    #: -1 (negative), 0 (neutral) or 1 (positive), whatever scale the client used
    sentiment: Mapped[int] = mapped_column(Integer, nullable=False)
    #: the rating as the client sent it (-1|0|1 or 1-5)
    rating: Mapped[int] = mapped_column(Integer, nullable=False)
    accepted_challenge: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())

    __table_args__ = (
        Index("idx_feedback_user_created", "user_id", created_at.desc()),
        Index("idx_feedback_turn", "turn_id", unique=True),
    )


class VoiceJob(Base):
    """One speech synthesis job: the database row is the job's source of truth.

    The queue only carries the id. A worker claims a job with a conditional
    update (and holds it under a lease it renews while synthesizing), so a
    message delivered twice, or a job re-queued after a crash, runs once.
    ``queue_age_ms`` is ``started_at - created_at`` of the first start: the
    VoiceQueueBacklog alert's P95 is taken over it.
    """

    __tablename__ = "voice_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), nullable=False)
    turn_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    #: queued | running | done | failed
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    backend: Mapped[str] = mapped_column(String(64), nullable=False)
    preset: Mapped[str] = mapped_column(String(32), nullable=False)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    chars: Mapped[int] = mapped_column(Integer, nullable=False)
    #: sha256 of (backend, preset, text): the voice_audio row that holds the result
    memo_key: Mapped[str] = mapped_column(String(64), nullable=False)
    memo_hit: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    #: who holds the job while it runs, and until when (renewed by a heartbeat)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: when the job was last handed to the queue (a new attempt, or a recovery)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    queue_age_ms: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        Index("idx_voice_jobs_status_enqueued", "status", "enqueued_at"),
        Index("idx_voice_jobs_started", "started_at"),
        Index("idx_voice_jobs_finished", "finished_at"),
        Index("idx_voice_jobs_created", "created_at"),
    )


class VoiceAudio(Base):
    """Synthesized audio, keyed by the memo key of (backend, preset, text).

    Kept in the database rather than on a worker's disk so that every host can
    serve it and the memo is shared; rows older than the retention are purged.
    """

    __tablename__ = "voice_audio"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    backend: Mapped[str] = mapped_column(String(64), nullable=False)
    preset: Mapped[str] = mapped_column(String(32), nullable=False)
    content_type: Mapped[str] = mapped_column(String(64), nullable=False)
    audio: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

    __table_args__ = (Index("idx_voice_audio_created", "created_at"),)


class VoiceUsage(Base):
    """Characters of speech each user asked for, per UTC day: the daily quota's counter."""

    __tablename__ = "voice_usage"

    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    chars: Mapped[int] = mapped_column(Integer, nullable=False)


class FlagChange(Base):
    """The audit trail of operator switches and rollout changes: who, when, why."""

    __tablename__ = "flag_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    key: Mapped[str] = mapped_column(String(64), nullable=False)
    value: Mapped[Any] = mapped_column(JsonDocument, nullable=True)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    reason: Mapped[str] = mapped_column(String(500), nullable=False)


class AlertState(Base):
    """Where each alert rule stands (inactive, pending, firing), kept across restarts."""

    __tablename__ = "alert_state"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    #: when the rule entered its current state (pending: the start of the ``for`` timer)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    value: Mapped[float | None] = mapped_column(Float)
    evaluated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class AlertEvent(Base):
    """Every alert state change, as notified."""

    __tablename__ = "alert_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, index=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    from_state: Mapped[str] = mapped_column(String(16), nullable=False)
    to_state: Mapped[str] = mapped_column(String(16), nullable=False)
    value: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[str] = mapped_column(String(500), nullable=False)

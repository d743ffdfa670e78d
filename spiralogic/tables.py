"""SQLAlchemy models of the service's tables. Alembic migrations create them."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, String, Uuid, func
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
    )

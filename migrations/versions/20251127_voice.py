"""Speech synthesis: voice jobs, their audio (the memo), and per-user daily usage.

Revision ID: 20251127_voice
Revises: 20251126_feedback
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20251127_voice"
down_revision: str | Sequence[str] | None = "20251126_feedback"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "voice_jobs",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("turn_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("preset", sa.String(32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("chars", sa.Integer(), nullable=False),
        sa.Column("memo_key", sa.String(64), nullable=False),
        sa.Column("memo_hit", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("lease_until", TIMESTAMP, nullable=True),
        sa.Column("enqueued_at", TIMESTAMP, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("queue_age_ms", sa.Integer(), nullable=True),
        sa.Column("cost_usd", sa.Float(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
    )
    op.create_index("idx_voice_jobs_status_enqueued", "voice_jobs", ["status", "enqueued_at"])
    op.create_index("idx_voice_jobs_started", "voice_jobs", ["started_at"])
    op.create_index("idx_voice_jobs_finished", "voice_jobs", ["finished_at"])
    op.create_index("idx_voice_jobs_created", "voice_jobs", ["created_at"])
    op.create_table(
        "voice_audio",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("backend", sa.String(64), nullable=False),
        sa.Column("preset", sa.String(32), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("audio", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
    )
    op.create_index("idx_voice_audio_created", "voice_audio", ["created_at"])
    op.create_table(
        "voice_usage",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("chars", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("voice_usage")
    op.drop_index("idx_voice_audio_created", table_name="voice_audio")
    op.drop_table("voice_audio")
    for index in ("idx_voice_jobs_created", "idx_voice_jobs_finished", "idx_voice_jobs_started", "idx_voice_jobs_status_enqueued"):
        op.drop_index(index, table_name="voice_jobs")
    op.drop_table("voice_jobs")

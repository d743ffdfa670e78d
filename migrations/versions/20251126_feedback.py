"""Feedback on turns: ratings and challenge acceptance, read for challenge consent.

One row per turn (a second rating of the same turn replaces the first).

Revision ID: 20251126_feedback
Revises: 20251125_runtime_state
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "20251126_feedback"
down_revision: str | Sequence[str] | None = "20251125_runtime_state"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("turn_id", sa.Uuid(), nullable=False),
        sa.Column("sentiment", sa.Integer(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("accepted_challenge", sa.Boolean(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index("idx_feedback_user_created", "feedback", ["user_id", sa.text("created_at DESC")])
    op.create_index("idx_feedback_turn", "feedback", ["turn_id"], unique=True)


def downgrade() -> None:
    op.drop_index("idx_feedback_turn", table_name="feedback")
    op.drop_index("idx_feedback_user_created", table_name="feedback")
    op.drop_table("feedback")

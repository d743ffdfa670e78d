"""Create consciousness_turn_meta, one row per chat turn.

Self-contained (does not import the models) so it keeps meaning what it meant
when written. JSONB and ``->>`` on PostgreSQL, so the launch playbook's
monitoring queries run unchanged; JSON and ``json_extract`` elsewhere (SQLite).

Revision ID: 20250901_consciousness_turn_meta
Revises:
Create Date: 2025-09-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "20250901_consciousness_turn_meta"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "consciousness_turn_meta"
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _top_resonance() -> sa.TextClause:
    """The indexed expression, in the current dialect's own words."""
    if op.get_context().dialect.name == "postgresql":
        return sa.text("(resonance ->> 'top')")
    return sa.text("json_extract(resonance, '$.top')")


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("session_id", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("orchestrator", sa.String(32), nullable=False),
        sa.Column("orchestrator_mode", sa.String(16), nullable=False),
        sa.Column("element", sa.String(16), nullable=True),
        sa.Column("metadata", JSON_DOCUMENT, nullable=False),
        sa.Column("resonance", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("idx_ctm_user_created", TABLE, ["user_id", sa.text("created_at DESC")])
    op.create_index("idx_ctm_top_resonance", TABLE, [_top_resonance()])


def downgrade() -> None:
    op.drop_index("idx_ctm_top_resonance", table_name=TABLE)
    op.drop_index("idx_ctm_user_created", table_name=TABLE)
    op.drop_table(TABLE)

"""An index on the turns' time: every monitoring, gate and alert query reads a time window.

Without it each window (an alert round reads several every few seconds) scans
the whole table, which only grows. On PostgreSQL the index is built
concurrently, so a live service keeps writing turns while it is built.

Revision ID: 20251129_turn_time_index
Revises: 20251128_rollout
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "20251129_turn_time_index"
down_revision: str | Sequence[str] | None = "20251128_rollout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "consciousness_turn_meta"
INDEX = "idx_ctm_created"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(INDEX, TABLE, ["created_at"], postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name=TABLE, postgresql_concurrently=True)

"""A throwaway SQLite database filled with turns, for the in-process measures."""

from __future__ import annotations

import tempfile
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

USERS = 50


def fresh_database(name: str) -> tuple[str, str]:
    """The URL of a new SQLite file migrated to head, and the temp dir holding it."""
    from spiralogic.migrate import upgrade

    data = tempfile.mkdtemp()
    url = f"sqlite:///{data}/{name}.db"
    upgrade(url)
    return url, data


def fill(
    engine,
    count: int,
    *,
    spacing: timedelta,
    metadata: Callable[[int], dict[str, Any]],
    resonance: Callable[[int], dict[str, Any]] = lambda i: {},
) -> None:
    """Insert ``count`` spiralogic turns of ``USERS`` users, the newest now, each ``spacing`` older than the one before."""
    import sqlalchemy as sa

    from spiralogic.tables import ConsciousnessTurnMeta

    now = datetime.now(timezone.utc)
    rows = [
        {
            "id": uuid.uuid4(),
            "user_id": f"user-{i % USERS}",
            "orchestrator": "spiralogic",
            "orchestrator_mode": "full",
            "created_at": now - i * spacing,
            "metadata": metadata(i),
            "resonance": resonance(i),
        }
        for i in range(count)
    ]
    with engine.begin() as conn:
        conn.execute(sa.insert(ConsciousnessTurnMeta.__table__), rows)

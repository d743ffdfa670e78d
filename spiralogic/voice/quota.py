"""Per-user daily character quota, counted in the database so every worker and host shares it.

A charge is one conditional upsert: it adds the characters only if the total
stays within the limit, so two requests racing on two hosts can never both
pass the last characters. The day is the UTC date of the injected clock: a
new day is a new row, which is the reset.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from spiralogic.tables import VoiceUsage

USAGE = VoiceUsage.__table__


@dataclass(frozen=True)
class QuotaState:
    used: int
    limit: int
    allowed: bool
    warning: bool

    def as_json(self) -> dict[str, object]:
        return {"used": self.used, "limit": self.limit, "warning": self.warning}


class Quota:
    def __init__(self, limit: int, warn_ratio: float):
        self.limit = limit
        self.warn_ratio = warn_ratio

    def charge(self, conn: Connection, user_id: str, chars: int, now: datetime) -> QuotaState:
        """Add ``chars`` to the user's day if the total stays within the limit; the resulting state."""
        day = now.astimezone(timezone.utc).date()
        insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[conn.dialect.name](USAGE)
        statement = insert.values(user_id=user_id, day=day, chars=chars).on_conflict_do_update(
            index_elements=["user_id", "day"],
            set_={"chars": USAGE.c.chars + insert.excluded.chars},
            where=USAGE.c.chars + insert.excluded.chars <= self.limit,
        )
        # A first row is inserted unconditionally, so a text over the whole limit is refused here.
        total = conn.execute(statement.returning(USAGE.c.chars)).scalar() if chars <= self.limit else None
        if total is not None:
            return self._state(total, allowed=True)
        return self._state(self.used(conn, user_id, now), allowed=False)

    @staticmethod
    def used(conn: Connection, user_id: str, now: datetime) -> int:
        day = now.astimezone(timezone.utc).date()
        used = conn.execute(sa.select(USAGE.c.chars).where(USAGE.c.user_id == user_id, USAGE.c.day == day)).scalar()
        return used or 0

    def _state(self, used: int, allowed: bool) -> QuotaState:
        return QuotaState(used=used, limit=self.limit, allowed=allowed, warning=not allowed or used >= self.warn_ratio * self.limit)

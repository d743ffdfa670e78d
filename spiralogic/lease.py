"""Database leases: at most one holder of a name at a time, across hosts.

A holder renews before expiry; if it dies, the lease lapses and another takes
over. Taking or renewing is one conditional UPDATE (or an INSERT for a new
name), so two contenders can never both believe they hold it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from spiralogic.tables import Lease

LEASES = Lease.__table__


def acquire(engine: Engine, name: str, holder: str, ttl: timedelta, now: datetime) -> bool:
    """Take or renew the lease; True if ``holder`` holds it until ``now + ttl``."""
    expires = now + ttl
    with engine.begin() as conn:
        renewed = conn.execute(
            sa.update(LEASES)
            .where(LEASES.c.name == name)
            .where(sa.or_(LEASES.c.holder == holder, LEASES.c.expires_at < now))
            .values(holder=holder, expires_at=expires)
        )
        if renewed.rowcount:
            return True
    with engine.begin() as conn:
        # DO NOTHING rather than catch the conflict: losing the race is normal, not an error to log.
        statement = _insert_if_absent(conn.dialect.name).values(name=name, holder=holder, expires_at=expires)
        return conn.execute(statement.returning(LEASES.c.name)).first() is not None


def _insert_if_absent(dialect: str):
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect]
    return insert(LEASES).on_conflict_do_nothing(index_elements=["name"])


def release(engine: Engine, name: str, holder: str) -> None:
    with engine.begin() as conn:
        conn.execute(sa.delete(LEASES).where(LEASES.c.name == name, LEASES.c.holder == holder))

"""The app's database engine: the embedded SQLite file or a server from DATABASE_URL."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine


def create_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"timeout": 5})
        sa.event.listen(engine, "connect", _tune_sqlite)
        return engine
    # pre_ping: a server restart must not turn the first query after it into an error.
    # connect_timeout: a server that stops answering must fail fast, not hang a writer for minutes.
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args={"connect_timeout": 3})


def _tune_sqlite(dbapi_connection, _record) -> None:
    # WAL lets readers (health checks, dashboards) run while the telemetry writer writes.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def is_reachable(engine: Engine) -> bool:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.SQLAlchemyError:
        return False

"""What one history read costs on SQLite, four ways, in process.

    .venv/bin/python load/history_read.py [--turns 100000] [--reads 2000]

Fills a throwaway SQLite file with ``--turns`` turns of 50 users, then times
the recent-turns statement of ``spiralogic.history``: through SQLAlchemy's
execution and result objects, as the service runs it (compiled by SQLAlchemy,
on the driver's cursor), the same SQL on a bare ``sqlite3`` connection, and
that again with an index covering the two JSON fields it reads (an
experiment: the service has no such index). No writer runs beside it, so this
is the read's floor; under load each commit of the telemetry writer makes it
dearer.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time
from datetime import timedelta
from typing import Callable

#: a turn row's metadata as the service writes it, so that SQLite parses documents of the real size
METADATA = {
    "firstTokenMs": 30,
    "tokens": {"completion": 40, "estimated": True},
    "requestId": "0" * 32,
    "route": "header",
    "textChars": 40,
    "crisis": False,
    "worldview": "pragmatic",
    "guardrails": {"worldview_signal": "text"},
    "qualityScore": 0.8,
}
# The service's statement with its JSON paths written out, as an expression index must match them.
RAW_SQL = (
    "SELECT json_extract(m.metadata, '$.worldview'), json_extract(m.metadata, '$.challenge'), f.sentiment, f.accepted_challenge "
    "FROM consciousness_turn_meta m LEFT JOIN feedback f ON f.turn_id = m.id "
    "WHERE m.user_id = ? ORDER BY m.created_at DESC LIMIT 20"
)
COVERING_INDEX = (
    "CREATE INDEX idx_ctm_user_recent_cover ON consciousness_turn_meta "
    "(user_id, created_at DESC, id, json_extract(metadata, '$.worldview'), json_extract(metadata, '$.challenge'))"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100_000)
    parser.add_argument("--reads", type=int, default=2000)
    args = parser.parse_args()
    os.environ.setdefault("SPIRALOGIC_ENV", "production")

    from synthetic_turns import USERS, fill, fresh_database

    from spiralogic.db import create_engine
    from spiralogic.history import RECENT, read_recent

    url, _ = fresh_database("history-read")
    engine = create_engine(url)
    fill(
        engine,
        args.turns,
        spacing=timedelta(milliseconds=1),
        metadata=lambda i: {**METADATA, "latencyMs": i % 700, **({"challenge": "low"} if i % 3 == 0 else {})},
    )

    def timed(label: str, read: Callable[[str], object]) -> None:
        started = time.perf_counter()
        for i in range(args.reads):
            read(f"user-{i % USERS}")
        print(f"{label}: {(time.perf_counter() - started) / args.reads * 1e6:.0f} µs per read")

    def through_sqlalchemy(user: str) -> list:
        with engine.connect() as conn:
            return conn.execute(RECENT, {"user_id": user}).all()

    timed("through SQLAlchemy's execution and result objects", through_sqlalchemy)
    timed("as the service reads it (on the driver's cursor)", lambda user: read_recent(engine, user))
    raw = sqlite3.connect(url.removeprefix("sqlite:///"))
    timed("the same SQL on a raw sqlite3 cursor", lambda user: raw.execute(RAW_SQL, (user,)).fetchall())
    raw.execute(COVERING_INDEX)
    raw.commit()
    timed("raw cursor, with an index covering the two JSON fields", lambda user: raw.execute(RAW_SQL, (user,)).fetchall())


if __name__ == "__main__":
    main()

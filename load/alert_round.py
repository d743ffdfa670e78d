"""How long one alert round takes at a sustained turn rate, in process.

    .venv/bin/python load/alert_round.py --rate 1000 [--rounds 5]

Fills a throwaway SQLite file with five minutes of turns at ``--rate`` turns a
second (the longest window of the default rules but the token one), then times
the default alert rules' rounds (``AlertEngine.evaluate``) and prints the best
and every round. A round reads every window the rules name, so its cost grows
with the traffic in them.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone

WINDOW_S = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="turns per second over the last five minutes")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("SPIRALOGIC_ENV", "production")

    import sqlalchemy as sa

    from spiralogic import create_app
    from spiralogic.migrate import upgrade
    from spiralogic.state import app_state
    from spiralogic.tables import ConsciousnessTurnMeta

    data = tempfile.mkdtemp()
    url = f"sqlite:///{data}/alert-round.db"
    upgrade(url)
    state = app_state(create_app({"database_url": url, "data_dir": data, "evaluator.in_app": False}))
    now = datetime.now(timezone.utc)
    count = WINDOW_S * args.rate
    rows = [
        {
            "id": uuid.uuid4(),
            "user_id": f"user-{i % 50}",
            "orchestrator": "spiralogic",
            "orchestrator_mode": "full",
            "created_at": now - timedelta(seconds=i / args.rate),
            "metadata": {"latencyMs": i % 700, "firstTokenMs": i % 300, "tokens": {"completion": 40}},
            "resonance": {"cache_hit": True} if i % 3 else {},
        }
        for i in range(count)
    ]
    with state.engine.begin() as conn:
        conn.execute(sa.insert(ConsciousnessTurnMeta.__table__), rows)

    took = []
    for round_number in range(args.rounds):
        started = time.perf_counter()
        state.alerts.evaluate(now + timedelta(seconds=round_number))
        took.append((time.perf_counter() - started) * 1000)
    every = ", ".join(f"{ms:.0f}" for ms in took)
    print(f"{count} turns in {WINDOW_S} s ({args.rate}/s): alert round {min(took):.0f} ms, best of {args.rounds} ({every})")


if __name__ == "__main__":
    main()

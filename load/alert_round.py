"""How long one alert round takes at a sustained turn rate, in process.

    .venv/bin/python load/alert_round.py --rate 1000 [--rounds 5] [--span-s 300]

Fills a throwaway SQLite file with ``--span-s`` seconds of turns at ``--rate``
turns a second, then times the default alert rules' rounds
(``AlertEngine.evaluate``, a second apart) and prints the best and every
round. The first round reads every window the rules name; the rounds after it
read the percentile windows (60 s) whole and, for the rules on counts, only
the minutes not kept yet, so the first round shows what the traffic in the
windows costs and the later ones what a round costs at that rate. Five
minutes cover every window but the token rule's; that one reads an hour and
the day before it (``--span-s 90000``).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime, timedelta, timezone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="turns per second")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--span-s", type=int, default=300, help="seconds of turns before now")
    args = parser.parse_args()
    os.environ.setdefault("SPIRALOGIC_ENV", "production")

    from synthetic_turns import fill, fresh_database

    from spiralogic import create_app
    from spiralogic.state import app_state

    url, data = fresh_database("alert-round")
    state = app_state(create_app({"database_url": url, "data_dir": data, "evaluator.in_app": False}))
    now = datetime.now(timezone.utc)
    count = args.span_s * args.rate
    fill(
        state.engine,
        count,
        spacing=timedelta(seconds=1 / args.rate),
        metadata=lambda i: {"latencyMs": i % 700, "firstTokenMs": i % 300, "tokens": {"completion": 40}},
        resonance=lambda i: {"cache_hit": True} if i % 3 else {},
    )

    took = []
    for round_number in range(args.rounds):
        started = time.perf_counter()
        state.alerts.evaluate(now + timedelta(seconds=round_number))
        took.append((time.perf_counter() - started) * 1000)
    every = ", ".join(f"{ms:.0f}" for ms in took)
    print(f"{count} turns in {args.span_s} s ({args.rate}/s): alert round {min(took):.0f} ms, best of {args.rounds} ({every})")


if __name__ == "__main__":
    main()

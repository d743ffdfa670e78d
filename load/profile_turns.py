"""Per-turn cost of the request path, in process: no server, no network.

    .venv/bin/python load/profile_turns.py --turns 200 [--profile] [--disable crisis ...]

Builds the app on a throwaway SQLite file, posts the playbook's five k6 cases
through the Flask test client and prints the wall time per turn; with
``--profile``, the top of a cProfile sorted by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time

CASES = [
    ("Help me find clarity in this decision", "air"),
    ("I feel stuck and need grounding", "earth"),
    ("Guide me through this emotional challenge", "water"),
    ("I need energy to take action", "fire"),
    ("Connect me with deeper wisdom", "aether"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--profile", action="store_true", help="print the top of a cProfile")
    parser.add_argument("--disable", nargs="*", default=[], help="plugins to leave out")
    args = parser.parse_args()
    os.environ.setdefault("SPIRALOGIC_ENV", "production")

    from spiralogic import create_app
    from spiralogic.migrate import upgrade
    from spiralogic.state import app_state

    data = tempfile.mkdtemp()
    url = f"sqlite:///{data}/profile.db"
    upgrade(url)
    # As load/bench.py runs the server: no rate limits, and the test client's loopback address is staff.
    overrides = {"rate_limits.enabled": False, "canary.staff_networks": ["127.0.0.1/32"]}
    app = create_app(
        {"database_url": url, "data_dir": data, "plugins.disabled": args.disable, "evaluator.in_app": False, **overrides}
    )
    client = app.test_client()

    def turns(count: int) -> None:
        for i in range(count):
            text, element = CASES[i % len(CASES)]
            body = {"userId": f"profile-{i % 40}", "text": text, "element": element}
            response = client.post("/api/oracle/chat", json=body, headers={"x-experiment-spiralogic": "on"})
            # Closed as a server closes it: that ends the turn's admission slot.
            response.close()
            if response.status_code != 200:
                raise SystemExit(f"turn {i} answered {response.status_code}: {response.get_data(as_text=True)}")
        app_state(app).telemetry.flush()

    turns(20)  # warm caches, imports and the classifier
    profiler = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    turns(args.turns)
    if profiler:
        profiler.disable()
    elapsed = time.perf_counter() - started
    print(f"{elapsed / args.turns * 1000:.2f} ms per turn over {args.turns} turns (disabled: {args.disable or 'none'})")
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


if __name__ == "__main__":
    main()

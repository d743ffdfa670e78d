"""Benchmark Spiralogic against a bare gevent floor, end to end, in one command.

Starts the real server (``spiralogic db upgrade`` + ``spiralogic serve``) and
the floor app (load/floor_app.py) on free loopback ports, drives each in turn
with the same users from a separate load-generator process (load/loadgen.py),
samples the workers' CPU and RSS, and writes load/results/<time>-<name>.json
and .md. Both servers are always torn down, and the whole run is bounded by
--max-seconds. See load/README.md for the profiles.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: load/ modules import flat

import report as reporting  # noqa: E402
from sampler import ResourceSampler  # noqa: E402
from servers import LOAD_DIR, Server, ServerStartError, die_with_parent, log_tail, start_floor, start_spiralogic, stop  # noqa: E402
from stats import overhead, summarize  # noqa: E402

from spiralogic.settings_env import PLAYBOOK_NAMES  # noqa: E402

#: at this error rate the bench shows the server's log tail (the cause is usually there)
ERROR_LOG_RATE = 0.05


class BenchError(RuntimeError):
    """The bench could not produce results; the message says why."""


class BenchTimeout(BenchError):
    pass


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except the empty ones (their help says what unset means)."""

    def _get_help_string(self, action):
        return action.help if action.default is None or action.default is False or action.default == [] else super()._get_help_string(action)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="load/bench.py", description=__doc__.split("\n\n")[0], formatter_class=_Help)
    load = p.add_argument_group("load")
    load.add_argument("--users", type=int, default=10, help="concurrent users (greenlets, one keep-alive connection each)")
    load.add_argument("--duration", type=float, default=30, help="measured seconds per server, after the warm-up")
    load.add_argument("--warmup", type=float, default=5, help="seconds of load before measuring (excluded from stats); users ramp up over its first half")
    load.add_argument("--think-min", type=float, default=0.0, help="least pause between one user's requests (s)")
    load.add_argument("--think-max", type=float, default=0.0, help="longest pause (s); 0 = no pause, closed-loop maximum load")
    load.add_argument("--stream", type=float, default=0.2, help="fraction of requests sent with Accept: text/event-stream (first-token time)")
    load.add_argument("--timeout", type=float, default=10.0, help="per-request client timeout (s); a timeout counts as an error")
    load.add_argument("--experiment", choices=("on", "off", "none"), default="on", help="x-experiment-spiralogic header value (none: not sent)")
    load.add_argument("--seed", type=int, default=1, help="seeds each user's think times and stream choices")
    server = p.add_argument_group("server")
    server.add_argument("--workers", type=int, default=2, help="gunicorn gevent workers, for both servers")
    server.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite", help="sqlite file in a temp dir, or a fresh schema in the 'test' database")
    server.add_argument("--env", default="production", help="SPIRALOGIC_ENV of the server (production: INFO logging)")
    server.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE", help="extra environment for the server, e.g. SPIRALOGIC_SOFT_BUDGET_MS=500 (repeatable)")
    upstream = p.add_argument_group("upstream")
    upstream.add_argument("--upstream", choices=("template", "simulated"), default="template", help="generation provider; the floor sleeps 0 for template")
    upstream.add_argument("--p50-ms", type=float, default=200, help="simulated upstream median latency (and the floor's)")
    upstream.add_argument("--p95-ms", type=float, default=400, help="simulated upstream 95th percentile (and the floor's)")
    upstream.add_argument("--hang-rate", type=float, default=0.0, help="share of simulated calls that hang (the floor never hangs)")
    upstream.add_argument("--hang-ms", type=float, default=None, help="how long a hang lasts (unset: the plugin's hang_ms)")
    run = p.add_argument_group("run")
    run.add_argument("--name", help="results file name part (unset: derived from the profile)")
    run.add_argument("--results-dir", type=Path, default=LOAD_DIR / "results", help="where the .json and .md go")
    run.add_argument("--skip-floor", action="store_true", help="benchmark Spiralogic only")
    run.add_argument("--start-timeout", type=float, default=60, help="seconds each server gets to become ready")
    run.add_argument("--max-seconds", type=float, help="hard limit on the whole run in seconds (unset: twice the planned load time + 180)")
    run.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (data, server and loadgen logs)")
    args = p.parse_args(argv)
    if args.users < 1 or args.duration <= 0 or args.warmup < 0 or not 0 <= args.stream <= 1:
        p.error("need --users >= 1, --duration > 0, --warmup >= 0 and 0 <= --stream <= 1")
    if args.think_min < 0 or args.think_max < args.think_min:
        p.error("need 0 <= --think-min <= --think-max")
    if args.p50_ms <= 0 or args.p95_ms < args.p50_ms:
        p.error("need 0 < --p50-ms <= --p95-ms")
    args.name = re.sub(r"[^A-Za-z0-9_-]+", "-", args.name or default_name(args))
    per_server = args.warmup + args.duration + args.timeout + 30
    args.max_seconds = args.max_seconds or 2 * per_server * (1 if args.skip_floor else 2) + 180
    return args


def default_name(args: argparse.Namespace) -> str:
    upstream = "template" if args.upstream == "template" else f"sim{args.p50_ms:g}-{args.p95_ms:g}"
    hang = f"-hang{args.hang_rate:g}" if args.hang_rate else ""
    return f"{upstream}{hang}-{args.users}u-{args.workers}w-{args.db}"


def server_env(args: argparse.Namespace, data_dir: Path, database_url: str | None) -> dict[str, str]:
    """A clean environment: inherited SPIRALOGIC_* and playbook names would make runs irreproducible."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPIRALOGIC_") and k not in PLAYBOOK_NAMES}
    env.update(SPIRALOGIC_ENV=args.env, SPIRALOGIC_DATA_DIR=str(data_dir))
    # A few users sending as fast as they can would otherwise measure the per-user rate
    # limit, not the service; --server-env SPIRALOGIC_RATE_LIMITS__ENABLED=true puts it back.
    env["SPIRALOGIC_RATE_LIMITS__ENABLED"] = "false"
    # Production lets only staff steer routing with the canary header; the load comes from loopback.
    env["SPIRALOGIC_CANARY__STAFF_NETWORKS"] = '["127.0.0.1/32"]'
    if database_url:
        env["DATABASE_URL"] = database_url
    if args.upstream == "simulated":
        env["SPIRALOGIC_GENERATION__PROVIDER"] = "simulated"
        prefix = "SPIRALOGIC_PLUGINS__SIMULATED__"
        env[prefix + "LATENCY_P50_MS"] = f"{args.p50_ms:g}"
        env[prefix + "LATENCY_P95_MS"] = f"{args.p95_ms:g}"
        env[prefix + "HANG_RATE"] = f"{float(args.hang_rate)}"
        if args.hang_ms is not None:
            env[prefix + "HANG_MS"] = f"{args.hang_ms:g}"
    for item in args.server_env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BenchError(f"--server-env wants KEY=VALUE, got {item!r}")
        env[key] = value
    return env


def loadgen_argv(args: argparse.Namespace, server: Server, out: Path) -> list[str]:
    return [
        sys.executable, str(LOAD_DIR / "loadgen.py"), "--port", str(server.port),
        "--users", str(args.users), "--warmup", str(args.warmup), "--duration", str(args.duration),
        "--think-min", str(args.think_min), "--think-max", str(args.think_max), "--stream", str(args.stream),
        "--timeout", str(args.timeout), "--experiment", args.experiment, "--seed", str(args.seed), "--out", str(out),
    ]  # fmt: skip


def drive(args: argparse.Namespace, server: Server, tmp: Path) -> dict:
    """Run the load generator against one server while sampling its workers; summarize."""
    out, log_path = tmp / f"{server.name}-loadgen.json", tmp / f"{server.name}-loadgen.log"
    say(f"driving {server.name}: {args.users} users, {args.warmup:g}s warm-up + {args.duration:g}s measured")
    with log_path.open("w") as log:
        proc = subprocess.Popen(loadgen_argv(args, server, out), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        with ResourceSampler(server.process.pid, proc.pid) as sampler:
            code = proc.wait(timeout=args.warmup + args.duration + args.timeout + 30)
    except subprocess.TimeoutExpired:
        raise BenchError(f"the load generator for {server.name} did not finish:\n{log_tail(log_path)}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    if code != 0 or not out.exists():
        raise BenchError(f"the load generator for {server.name} failed ({code}):\n{log_tail(log_path)}")
    if server.process.poll() is not None:
        raise BenchError(f"{server.name} died during the run:\n{log_tail(server.log_path)}")
    run = json.loads(out.read_text())
    summary = summarize(run)
    summary["resources"] = sampler.summary(*run["window_epoch"])
    if (summary["error_rate"] or 0) >= ERROR_LOG_RATE:
        say(f"{server.name} answered {100 * summary['error_rate']:.1f}% errors; its log ends:\n{log_tail(server.log_path, 20)}")
    return summary


def headline(args: argparse.Namespace) -> str:
    upstream = "template voice" if args.upstream == "template" else f"simulated upstream p50 {args.p50_ms:g} / p95 {args.p95_ms:g} ms"
    if args.hang_rate:
        upstream += f", hang rate {args.hang_rate:g}" + (f" × {args.hang_ms:g} ms" if args.hang_ms is not None else "")
    think = f"think {args.think_min:g}–{args.think_max:g} s" if args.think_max else "no think time"
    return (
        f"{args.users} users, {think}, {100 * args.stream:g}% streamed, {args.warmup:g} s warm-up + {args.duration:g} s measured; "
        f"{upstream}; {args.workers} workers; {args.db}; header x-experiment-spiralogic: {args.experiment}; "
        f"{os.cpu_count()} CPUs"
    )


def build_report(args: argparse.Namespace, results: dict) -> dict:
    report = {
        "name": args.name,
        "timestamp": datetime.now().strftime("%Y%m%dT%H%M%S"),
        "headline": headline(args),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        **results,
    }
    if "floor" in results:
        report["overhead"] = overhead(results["spiralogic"], results["floor"])
    report["warnings"] = reporting.warnings(results, os.cpu_count() or 1)
    return report


def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _on_alarm(signum, frame):
    raise BenchTimeout("the bench hit --max-seconds; tearing down")


def _on_term(signum, frame):
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace, tmp: Path, servers: list[Server]) -> dict:
    database_url = None
    if args.db == "postgresql":
        from pgschema import create_schema, server_url

        args.pg_schema = create_schema()
        database_url = server_url(args.pg_schema)
        say(f"postgresql schema {args.pg_schema} created")
    env = server_env(args, tmp / "data", database_url)
    say(f"starting spiralogic ({args.workers} workers, {args.upstream}, {args.db})")
    servers.append(start_spiralogic(env, args.workers, tmp, args.start_timeout))
    if not args.skip_floor:
        floor_p50, floor_p95 = (0, 0) if args.upstream == "template" else (args.p50_ms, args.p95_ms)
        say("starting floor")
        servers.append(start_floor(args.workers, floor_p50, floor_p95, tmp, args.start_timeout))
    # One at a time: two loaded servers on 2 cores would measure each other.
    return {server.name: drive(args, server, tmp) for server in servers}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGTERM, _on_term)
    signal.setitimer(signal.ITIMER_REAL, args.max_seconds)
    tmp = Path(tempfile.mkdtemp(prefix="spiralogic-bench-"))
    servers: list[Server] = []
    args.pg_schema = None
    ok = False
    try:
        started = time.monotonic()
        report = build_report(args, run(args, tmp, servers))
        json_path, md_path = reporting.write(report, args.results_dir)
        print(reporting.markdown(report))
        say(f"wrote {json_path} and {md_path.name} in {time.monotonic() - started:.0f}s")
        ok = True
        return 0
    except (BenchError, ServerStartError) as exc:
        say(f"FAILED: {exc}")
        return 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        teardown(args, servers, tmp, keep=args.keep_tmp or not ok)


def teardown(args: argparse.Namespace, servers: list[Server], tmp: Path, keep: bool) -> None:
    for server in reversed(servers):
        stop(server)
    if args.pg_schema:
        from pgschema import drop_schema

        try:
            drop_schema(args.pg_schema)
        except Exception as exc:  # noqa: BLE001 - report and go on: the servers are already down
            say(f"could not drop schema {args.pg_schema}: {exc}")
    if keep:
        say(f"logs and data kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

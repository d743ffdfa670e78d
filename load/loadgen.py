"""The load generator: N simulated users against one server, run as its own process.

``load/bench.py`` starts it with ``python load/loadgen.py ...``; it writes every
request it made to ``--out`` (JSON) and exits. It runs in a process of its own
so that its greenlets never share an event loop, a GIL or a scheduler slot with
the server's workers, and its CPU can be measured apart from theirs.

Why gevent + the standard library's ``http.client`` (one keep-alive connection
per user) rather than asyncio + httpx: on 2 cores the client competes with the
server for CPU, so every microsecond it spends per request is taken from the
thing being measured. gevent's loop is libev in C and ``http.client`` is a thin
parser; httpx adds h11, anyio and its pool per request, and asyncio's loop is
mostly Python, several times the client CPU per request at the same rate. No
pool either: each user owns its connection, as a browser tab or k6 VU does.
The generator also measures its own event-loop lag and CPU time, so a
saturated client shows up in the report instead of silently inflating latency.

Monkey patching happens only under ``__main__``: importing this module (e.g.
from tests) patches nothing.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import resource
import sys
import time
from dataclasses import dataclass

# The playbook's five k6 test cases, cycled per user.
TEST_CASES = (
    ("Help me find clarity in this decision", "air"),
    ("I feel stuck and need grounding", "earth"),
    ("Guide me through this emotional challenge", "water"),
    ("I need energy to take action", "fire"),
    ("Connect me with deeper wisdom", "aether"),
)
CHAT_PATH = "/api/oracle/chat"
#: the columns of each row in the output's "samples"
FIELDS = (
    "start_s",  # when the request started, seconds since the generator's t0
    "latency_ms",  # request sent to response fully read (or to the transport error)
    "status",  # HTTP status, or null on a transport error
    "first_token_ms",  # streamed requests: first `segment` (or `done`) event bytes; else null
    "mode",  # done event's data.mode, else the x-orchestrator-mode header
    "orchestrator",  # x-orchestrator header
    "cache_hit",  # meta.cacheHit (null when absent)
    "stream",  # 1 when the request asked for text/event-stream
    "error",  # null, "transport:<Exception>", "timeout" or "bad_body:<why>"
    "server_first_token_ms",  # meta.firstTokenMs
    "server_latency_ms",  # meta.latencyMs: the turn's own clock, from its (lag-backdated) start to its answer
)
LAG_PROBE_S = 0.01


@dataclass(frozen=True)
class Plan:
    host: str
    port: int
    users: int
    warmup: float
    duration: float
    think_min: float
    think_max: float
    stream: float
    timeout: float
    experiment: str
    seed: int

    @property
    def ramp(self) -> float:
        # Users arrive over the first half of the warm-up rather than all in one instant.
        return self.warmup / 2


class Connection:
    """One user's keep-alive connection; reopened after the server closes it."""

    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn: http.client.HTTPConnection | None = None
        self.used = False

    def request(self, body: bytes, headers: dict[str, str]) -> http.client.HTTPResponse:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn, self.used = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout), False
            try:
                self.conn.request("POST", CHAT_PATH, body, headers)
                response = self.conn.getresponse()
                self.used = True
                return response
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # A reused connection the server closed while idle (keep-alive expiry) is
                # retried once on a fresh one, as every HTTP client does; anything else counts.
                reused = self.used
                self.close()
                if attempt == 2 or not reused:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def read_sse(response, t0: float) -> tuple[dict | None, float | None]:
    """Read the whole stream; return the done event's JSON and the first-token time (ms)."""
    first_token_ms = None
    event = None
    done = None
    while True:
        line = response.readline()
        if not line:
            return done, first_token_ms
        if line.startswith(b"event:"):
            event = line[6:].strip()
            if first_token_ms is None and event in (b"segment", b"done"):
                # No segment at all (a fallback answer): the done event carries the first text.
                first_token_ms = (time.perf_counter() - t0) * 1000
        elif line.startswith(b"data:") and event == b"done":
            done = json.loads(line[5:])


def one_request(connection: Connection, plan: Plan, user: int, k: int, stream: bool, t_base: float) -> list:
    text, element = TEST_CASES[(user + k) % len(TEST_CASES)]
    body = json.dumps({"userId": f"bench-user-{user}", "text": text, "element": element}).encode()
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    if plan.experiment != "none":
        headers["x-experiment-spiralogic"] = plan.experiment
    t0 = time.perf_counter()
    row = [round(t0 - t_base, 4), None, None, None, None, None, None, int(stream), None, None, None]
    try:
        with gevent.Timeout(plan.timeout):
            response = connection.request(body, headers)
            row[2] = response.status
            if response.status != 200:
                response.read()  # an error page: drain it so the connection can be reused
                payload = None
            elif (response.getheader("content-type") or "").startswith("text/event-stream"):
                payload, row[3] = read_sse(response, t0)
            else:
                payload = json.loads(response.read())
    except gevent.Timeout:
        connection.close()
        row[8] = "timeout"
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        row[8] = f"transport:{type(exc).__name__}"
    except ValueError as exc:  # JSON that does not parse
        connection.close()
        row[8] = f"bad_body:{type(exc).__name__}"
    else:
        row[4] = response.getheader("x-orchestrator-mode")
        row[5] = response.getheader("x-orchestrator")
        _read_payload(row, payload)
    row[1] = round((time.perf_counter() - t0) * 1000, 3)
    return row


def _read_payload(row: list, payload: dict | None) -> None:
    if row[2] != 200:
        return
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        row[8] = "bad_body:no_data"
        return
    data, meta = payload["data"], payload.get("meta") or {}
    if not data.get("message"):
        row[8] = "bad_body:no_message"
    row[4] = data.get("mode", row[4])  # the mode the turn ran in (a stream's header is its start mode)
    row[6] = meta.get("cacheHit")
    row[9] = meta.get("firstTokenMs")
    row[10] = meta.get("latencyMs")


def run_user(user: int, plan: Plan, t_base: float, stop_at: float, rows: list) -> None:
    rng = random.Random(plan.seed * 1_000_003 + user)
    connection = Connection(plan.host, plan.port, plan.timeout)
    gevent.sleep(rng.uniform(0, plan.ramp))
    k = 0
    try:
        while time.perf_counter() < stop_at:
            rows.append(one_request(connection, plan, user, k, rng.random() < plan.stream, t_base))
            k += 1
            think = rng.uniform(plan.think_min, plan.think_max) if plan.think_max > 0 else 0.0
            gevent.sleep(max(0.0, min(think, stop_at - time.perf_counter())))
    finally:
        connection.close()


def watch_loop_lag(window_start: float, stop_at: float, lags_ms: list) -> None:
    """How late the client's own timers fire: a busy client delays every measurement by this."""
    while time.perf_counter() < stop_at:
        t = time.perf_counter()
        gevent.sleep(LAG_PROBE_S)
        if t >= window_start:
            lags_ms.append((time.perf_counter() - t - LAG_PROBE_S) * 1000)


def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(plan: Plan) -> dict:
    t_base = time.perf_counter()
    epoch_offset = time.time() - t_base
    window_start, stop_at = t_base + plan.warmup, t_base + plan.warmup + plan.duration
    rows: list = []
    lags: list = []
    cpu: dict = {}

    def mark(name: str, at: float) -> None:
        gevent.sleep(max(0.0, at - time.perf_counter()))
        cpu[name] = (client_cpu_s(), time.perf_counter())

    users = [gevent.spawn(run_user, i, plan, t_base, stop_at, rows) for i in range(plan.users)]
    helpers = [gevent.spawn(mark, "start", window_start), gevent.spawn(mark, "end", stop_at)]
    helpers.append(gevent.spawn(watch_loop_lag, window_start, stop_at, lags))
    # Users stop starting requests at stop_at; the ones in flight get their timeout to finish.
    gevent.joinall(users + helpers, timeout=plan.warmup + plan.duration + plan.timeout + 5)
    gevent.killall(users + helpers, block=True, timeout=5)
    (cpu_start, t_start), (cpu_end, t_end) = cpu.get("start", (0.0, 1.0)), cpu.get("end", (0.0, 1.0))
    return {
        "fields": FIELDS,
        "samples": rows,
        "window": {"start_s": plan.warmup, "end_s": plan.warmup + plan.duration},
        # Wall-clock (time.time) bounds of the measured window, to line up the server samples.
        "window_epoch": [window_start + epoch_offset, stop_at + epoch_offset],
        "client": {
            "cpu_percent": round(100 * (cpu_end - cpu_start) / max(1e-9, t_end - t_start), 1) if "end" in cpu else None,
            "loop_lag_ms": sorted(round(v, 3) for v in lags),
            "pid": os.getpid(),
        },
        "plan": plan.__dict__,
    }


def parse_args(argv: list[str] | None = None) -> tuple[Plan, str]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--think-min", type=float, default=0.0)
    parser.add_argument("--think-max", type=float, default=0.0)
    parser.add_argument("--stream", type=float, default=0.0, help="fraction of requests sent with Accept: text/event-stream")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--experiment", default="on", choices=("on", "off", "none"))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("load goes to the loopback interface only")
    out = args.out
    del args.out
    return Plan(**vars(args)), out


def main() -> None:
    plan, out = parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, plan.users * 2 + 256)), hard))
    result = run(plan)
    with open(out, "w") as handle:
        json.dump(result, handle, separators=(",", ":"))
    print(f"loadgen: {len(result['samples'])} requests, client CPU {result['client']['cpu_percent']}%", file=sys.stderr)


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    import gevent  # noqa: E402  (after patching, as gevent requires)

    main()
else:
    import gevent  # importing for tests or tools: no patching

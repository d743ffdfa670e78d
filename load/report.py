"""The bench's report: warnings about the run itself, the Markdown table and the result files."""

from __future__ import annotations

import json
from pathlib import Path

#: the client's own event loop running this late (ms, P99) means it delayed the measurements
CLIENT_LAG_P99_MS = 20.0
#: one core: the client is single-threaded, so near this it is the bottleneck
CLIENT_CPU_PERCENT = 80.0


def warnings(results: dict, cpus: int) -> list[str]:
    found = []
    for name, summary in results.items():
        client, resources = summary["client"], summary.get("resources") or {}
        lag = client["loop_lag_ms"]["p99"]
        if (client["cpu_percent"] or 0) >= CLIENT_CPU_PERCENT or (lag or 0) >= CLIENT_LAG_P99_MS:
            found.append(
                f"{name}: the load generator looks saturated (CPU {client['cpu_percent']}%, loop lag P99 {lag} ms); "
                "its latencies include client-side queueing"
            )
        server_cpu = (resources.get("server_cpu_percent") or {}).get("mean") or 0
        if server_cpu + (client["cpu_percent"] or 0) >= 90 * cpus:
            found.append(f"{name}: the machine's {cpus} cores were saturated (server {server_cpu}% + client {client['cpu_percent']}%)")
        if summary["error_rate"]:
            found.append(f"{name}: {100 * summary['error_rate']:.2f}% of requests failed: {summary['status_counts']}")
        if summary["requests"] == 0:
            found.append(f"{name}: no request started inside the measured window")
    return found


def _fmt(value, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    return f"{value}{unit}"


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f}%"


def _mix(mix: dict) -> str:
    return ", ".join(f"{key} {100 * share:.1f}%" for key, share in mix.items()) or "–"


def _resource_cells(summary: dict) -> tuple[str, str]:
    resources = summary.get("resources") or {}
    total = resources.get("server_cpu_percent") or {}
    workers = resources.get("workers") or []
    cpu = f"{_fmt(total.get('mean'))} / {_fmt(total.get('max'))}"
    rss = f"{_fmt(max((w['rss_mb_mean'] for w in workers), default=None))} / {_fmt(max((w['rss_mb_max'] for w in workers), default=None))}"
    return cpu, rss


def markdown(report: dict) -> str:
    ours, floor, over = report["spiralogic"], report.get("floor"), report.get("overhead") or {}
    columns = [("spiralogic", ours)] + ([("floor", floor)] if floor else [])
    lines = [f"# Bench {report['name']}", "", report["headline"], ""]
    header = "| metric | " + " | ".join(name for name, _ in columns) + (" | overhead (diff / ratio) |" if floor else " |")
    lines += [header, "|---" * (len(columns) + 1 + bool(floor)) + "|"]

    def row(label: str, cells: list[str], extra: str = "") -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + (f" | {extra} |" if floor else " |"))

    def over_cell(key: str) -> str:
        item = over.get(key) or {}
        return f"{_fmt(item.get('diff'))} / {_fmt(item.get('ratio'))}×" if item.get("diff") is not None else "–"

    row("requests (measured)", [_fmt(s["requests"]) for _, s in columns])
    row("req/s", [_fmt(s["rps"]) for _, s in columns], over_cell("rps"))
    for key, label in (("p50", "P50 ms"), ("p95", "P95 ms"), ("p99", "P99 ms"), ("max", "max ms")):
        row(label, [_fmt(s["latency_ms"][key]) for _, s in columns], over_cell(f"{key}_ms") if key in ("p50", "p99") else "")
    row("P50 / P95 ms, 200s only", [f"{_fmt(s['ok_latency_ms']['p50'])} / {_fmt(s['ok_latency_ms']['p95'])}" for _, s in columns])
    row("first token P95 ms (client, streamed)", [_fmt(s["first_token_ms"]["p95"]) for _, s in columns])
    row("first token P95 ms (server meta)", [_fmt(s["server_first_token_ms"]["p95"]) for _, s in columns])
    row("P99 / max ms (server meta)", [f"{_fmt(s['server_latency_ms']['p99'])} / {_fmt(s['server_latency_ms']['max'])}" for _, s in columns])
    row("error rate", [_pct(s["error_rate"]) for _, s in columns])
    row("cache-hit ratio", [_pct(s["cache_hit_ratio"]) for _, s in columns])
    row("server CPU % (all workers) mean / max", [_resource_cells(s)[0] for _, s in columns])
    row("RSS MB per worker mean / max", [_resource_cells(s)[1] for _, s in columns])
    row("client CPU % / loop lag P99 ms", [f"{_fmt(s['client']['cpu_percent'])} / {_fmt(s['client']['loop_lag_ms']['p99'])}" for _, s in columns])
    lines.append("")
    for name, summary in columns:
        lines.append(f"- **{name}** status: {', '.join(f'{k} ×{v}' for k, v in summary['status_counts'].items()) or '–'}")
        lines.append(f"  - modes: {_mix(summary['mode_mix'])}; orchestrators: {_mix(summary['orchestrator_mix'])}")
        for worker in (summary.get("resources") or {}).get("workers", []):
            lines.append(
                f"  - worker {worker['pid']}: CPU {worker['cpu_percent_mean']}% mean / {worker['cpu_percent_max']}% max, "
                f"RSS {worker['rss_mb_mean']} / {worker['rss_mb_max']} MB "
                f"({worker['rss_mb_first']} → {worker['rss_mb_last']} MB, slope {worker['rss_slope_mb_per_min']} MB/min, "
                f"{worker['rss_slope_last_half_mb_per_min']} MB/min in the second half)"
            )
    if report["warnings"]:
        lines += ["", "**Warnings**", ""] + [f"- {text}" for text in report["warnings"]]
    return "\n".join(lines) + "\n"


def write(report: dict, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stem = directory / f"{report['timestamp']}-{report['name']}"
    json_path, md_path = Path(f"{stem}.json"), Path(f"{stem}.md")
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    return json_path, md_path

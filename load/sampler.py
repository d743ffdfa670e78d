"""Samples CPU% and RSS of a server's gunicorn workers (and the load generator) with psutil.

A background thread in the bench process polls every ``interval`` seconds.
Workers are found afresh each time as the master's children, so a worker
gunicorn restarts mid-run is picked up under its new pid. Samples carry
wall-clock times so the summary keeps only those inside the measured window.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from statistics import StatisticsError, fmean, linear_regression

import psutil


class ResourceSampler:
    def __init__(self, master_pid: int, client_pid: int | None = None, interval: float = 0.5):
        self.master = psutil.Process(master_pid)
        self.client_pid = client_pid
        self.interval = interval
        self.samples: list[tuple[float, str, int, float, int]] = []  # (time, role, pid, cpu%, rss)
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="resource-sampler", daemon=True)

    def __enter__(self) -> ResourceSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _targets(self) -> list[tuple[str, int]]:
        try:
            targets = [("worker", child.pid) for child in self.master.children()]
        except psutil.Error:
            targets = []
        if self.client_pid is not None:
            targets.append(("client", self.client_pid))
        return targets

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time()
            for role, pid in self._targets():
                proc = self._procs.get(pid)
                try:
                    if proc is None:
                        # The first cpu_percent() call only sets the baseline; the next one reports.
                        proc = self._procs[pid] = psutil.Process(pid)
                        proc.cpu_percent(None)
                        continue
                    with proc.oneshot():
                        self.samples.append((now, role, pid, proc.cpu_percent(None), proc.memory_info().rss))
                except psutil.Error:
                    self._procs.pop(pid, None)
            self._stop.wait(self.interval)

    def summary(self, start: float, end: float) -> dict:
        """Per worker mean/max CPU% and RSS (MB) within [start, end], plus totals and the client."""
        by_pid: dict[tuple[str, int], list[tuple[float, float, int]]] = defaultdict(list)
        totals: dict[float, float] = defaultdict(float)
        for at, role, pid, cpu, rss in self.samples:
            if start <= at <= end:
                by_pid[(role, pid)].append((at, cpu, rss))
                if role == "worker":
                    totals[at] += cpu
        workers = [_describe(pid, rows) for (role, pid), rows in sorted(by_pid.items()) if role == "worker"]
        client = [_describe(pid, rows) for (role, pid), rows in by_pid.items() if role == "client"]
        return {
            "workers": workers,
            "server_cpu_percent": {"mean": _round(fmean(totals.values())) if totals else None, "max": _round(max(totals.values(), default=None))},
            "client": client[0] if client else None,
        }


def _describe(pid: int, rows: list[tuple[float, float, int]]) -> dict:
    minutes, cpus, rss = [at / 60 for at, _, _ in rows], [cpu for _, cpu, _ in rows], [r / 2**20 for _, _, r in rows]
    return {
        "pid": pid,
        "cpu_percent_mean": _round(fmean(cpus)),
        "cpu_percent_max": _round(max(cpus)),
        "rss_mb_mean": _round(fmean(rss)),
        "rss_mb_max": _round(max(rss)),
        "rss_mb_first": _round(rss[0]),
        "rss_mb_last": _round(rss[-1]),
        "rss_slope_mb_per_min": _slope(minutes, rss),
        # A cache filling up slows to a plateau; a leak keeps its slope in the second half too.
        "rss_slope_last_half_mb_per_min": _slope(minutes[len(minutes) // 2 :], rss[len(rss) // 2 :]),
        "samples": len(rows),
    }


def _slope(minutes: list[float], rss_mb: list[float]) -> float | None:
    """Least-squares growth of RSS over the measured window: a leak shows as a steady positive slope."""
    try:
        return round(linear_regression(minutes, rss_mb).slope, 3)
    except StatisticsError:  # fewer than two samples, or all at one instant
        return None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)

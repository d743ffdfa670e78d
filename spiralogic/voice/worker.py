"""The voice worker: runs queued jobs with the voice backend, in its own process.

Synthesis is CPU-bound (the embedded engine) or slow (a remote API), so it
never runs in a web worker. Each job is claimed in the database first; a
job that another worker holds, or that already finished, is skipped, which
makes every delivery idempotent. While synthesizing, a heartbeat renews the
job's lease; if the worker dies, the lease lapses and the maintenance loop
(of any worker) queues the job again. A failed attempt is retried after a
backoff that doubles each time, until ``max_attempts``; then the job ends
``failed`` with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
import uuid
from datetime import date, datetime, timedelta
from typing import Any, Callable, Iterator

import sqlalchemy as sa

from spiralogic.components import Registry
from spiralogic.voice import SynthesisRejected
from spiralogic.voice.service import VoiceService
from spiralogic.voice.store import Audio

log = logging.getLogger(__name__)
#: how often finished jobs past the retention are purged (s); recovery runs more often
PURGE_EVERY_S = 60.0


class VoiceWorker:
    def __init__(self, service: VoiceService, backends: Registry, clock: Callable[[], datetime]):
        self.service = service
        self.config = service.config
        self.store = service.store
        self.metrics = service.metrics
        self.backends = backends
        self.clock = clock
        # Fits voice_jobs.claimed_by (64): whose lease it is, readable in the row.
        self.id = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._purged_at = float("-inf")
        service.queue.handler = self.run_job

    # -- One job -----------------------------------------------------------------

    def run_job(self, job_id: str) -> None:
        job = self.store.claim(uuid.UUID(job_id), self.id, self.clock(), self.config.lease_s)
        if job is None:
            self.metrics.incr("voice.jobs.skipped")
            return
        if job["attempts"] == 1:
            self.metrics.timing("voice.queue.age", job["queue_age_ms"])
        try:
            audio, cost = self._synthesize(job)
        except Exception as exc:  # noqa: BLE001 - a backend may raise anything; the job records it
            self._attempt_failed(job, exc)
            return
        if not self.store.finish(job, self.id, self.clock(), audio=audio, cost_usd=cost):
            return
        self.metrics.incr("voice.jobs.done")
        if audio is not None:
            self.metrics.incr(f"voice.chars.synthesized.{job['backend']}", job["chars"])

    def _synthesize(self, job: dict[str, Any]) -> tuple[Audio | None, float]:
        """The audio and its estimated cost; (None, 0) when identical audio is memoized."""
        window = self.config.memo_window_s
        if window > 0 and self.store.fresh_audio(job["memo_key"], self.clock() - timedelta(seconds=window)):
            self.metrics.incr("voice.jobs.memo_hit")
            return None, 0.0
        # A backend this worker cannot build fails the attempt, not the job: another worker may have it.
        backend = self.backends.get(job["backend"])
        started = time.monotonic()
        with self._heartbeat(job["id"]):
            data, content_type = backend.synthesize(job["text"], job["preset"])
        self.metrics.timing(f"voice.synthesis.{job['backend']}", (time.monotonic() - started) * 1000)
        if not data or not isinstance(content_type, str) or not content_type.startswith("audio/"):
            raise SynthesisRejected(f"backend {job['backend']} returned no audio ({content_type!r})")
        return Audio(bytes(data), content_type), job["chars"] / 1000 * self.config.price_per_1k_chars(job["backend"])

    @contextlib.contextmanager
    def _heartbeat(self, job_id: uuid.UUID) -> Iterator[None]:
        """Renew the job's lease while the block runs, so no other worker takes it over."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(self.config.lease_s / 3):
                try:
                    self.store.renew(job_id, self.id, self.clock(), self.config.lease_s)
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("voice job %s: lease not renewed (%s)", job_id, type(exc).__name__)

        thread = threading.Thread(target=beat, name=f"voice-lease-{job_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _attempt_failed(self, job: dict[str, Any], exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        final = isinstance(exc, SynthesisRejected) or job["attempts"] >= self.config.max_attempts
        delay = self.config.retry_backoff_s * 2 ** (job["attempts"] - 1)
        now = self.clock()
        if not self.store.give_back(job, self.id, now, reason, None if final else now + timedelta(seconds=delay)):
            return
        log.warning("voice job %s attempt %d failed%s: %s", job["id"], job["attempts"], "" if final else f", retry in {delay:g} s", reason)
        if final:
            self.metrics.incr("voice.jobs.failed")
            return
        self.metrics.incr("voice.jobs.retried")
        with contextlib.suppress(Exception):  # a broker fault: recovery hands the job out later
            self.service.queue.schedule(job["id"], delay)

    # -- Maintenance ---------------------------------------------------------------

    def maintain(self) -> None:
        """Queue jobs whose message was lost, purge old ones, and report the queue's health."""
        now = self.clock()
        for job_id in self.store.recover(now, self.config.requeue_after_s, self.config.max_attempts):
            self.service.queue.enqueue(job_id)
        if time.monotonic() - self._purged_at >= PURGE_EVERY_S:
            self.store.purge(now - timedelta(seconds=self.config.retention_s))
            self._purged_at = time.monotonic()
        reading = self.service.health.read(fresh=True)
        self.metrics.gauge("voice.queue.depth", reading.depth)
        self.metrics.gauge("voice.queue.age_p95_ms", reading.age_p95_ms)
        self.metrics.gauge("voice.tags.enabled", int(reading.tags_enabled))
        spend = self.daily_spend(now.date())
        for row in spend["backends"]:
            self.metrics.gauge(f"voice.cost.daily_usd.{row['backend']}", row["cost_usd"])
            self.metrics.gauge(f"voice.chars.daily.{row['backend']}", row["chars"])
        if spend["budget_ratio"] is not None:
            self.metrics.gauge("voice.cost.budget_ratio", spend["budget_ratio"])

    def daily_spend(self, day: date) -> dict[str, Any]:
        """Per backend and in total: characters synthesized on ``day`` and their estimated cost."""
        backends = self.store.daily_synthesis(day)
        total = round(sum(row["cost_usd"] for row in backends), 6)
        budget = self.config.daily_budget_usd
        return {
            "day": day.isoformat(),
            "backends": backends,
            "cost_usd": total,
            "budget_usd": budget,
            "budget_ratio": round(total / budget, 4) if budget else None,
        }

    def _maintain_every(self, interval_s: float, stop: threading.Event) -> None:
        while not stop.wait(interval_s):
            try:
                self.maintain()
            except Exception:  # noqa: BLE001 - the loop must outlive a database or broker blip
                log.exception("voice maintenance failed")

    # -- Running -------------------------------------------------------------------

    def check_backend(self) -> None:
        """Raise ComponentUnavailable now if the configured backend cannot be built, rather than per job."""
        self.backends.get(self.config.backend)

    def run(self) -> None:
        """Consume the queue until SIGINT (graceful) or SIGTERM; maintenance runs beside it."""
        self.check_backend()
        self.maintain()
        stop = threading.Event()
        interval = max(1.0, self.config.lease_s / 3)
        threading.Thread(target=self._maintain_every, args=(interval, stop), name="voice-maintenance", daemon=True).start()
        try:
            self.service.queue.consumer().run()
        finally:
            stop.set()

    def drain(self) -> int:
        """Run every job that is due now, then return how many messages were handled."""
        self.check_backend()
        self.maintain()
        huey = self.service.queue.huey
        for task in huey.read_schedule():
            huey.enqueue(task)
        handled = 0
        while (task := huey.dequeue()) is not None:
            huey.execute(task)
            handled += 1
        return handled

"""The request side of speech synthesis: decide what to voice, charge the quota, queue a job.

A voiced turn never synthesizes anything itself: it writes one job row (in
the same transaction as the quota charge) and puts its id on the queue, or,
when identical audio is memoized, answers with the finished job at once. The
chat answer's ``data.voice`` says which, with the user's quota.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any, Callable

import sqlalchemy as sa
from flask import Flask, current_app

from spiralogic.components import ComponentUnavailable
from spiralogic.settings import ConfigError
from spiralogic.voice import EXPRESSIVE
from spiralogic.voice.config import VoiceConfig
from spiralogic.voice.health import QueueHealth
from spiralogic.voice.queue import VoiceQueue
from spiralogic.voice.quota import Quota
from spiralogic.voice.store import JobStore
from spiralogic.voice.text import fit, memo_key, strip_tags

log = logging.getLogger(__name__)
EXTENSION = "spiralogic.voice"
JOB_PATH = "/api/oracle/voice/{job_id}"


def job_url(job_id: uuid.UUID | str) -> str:
    return JOB_PATH.format(job_id=job_id)


class VoiceService:
    def __init__(self, config: VoiceConfig, engine: sa.Engine, metrics, clock: Callable[[], datetime]):
        self.config = config
        self.store = JobStore(engine)
        self.quota = Quota(config.daily_char_quota, config.quota_warn_ratio)
        self.queue = VoiceQueue(config)
        self.health = QueueHealth(self.store, window_s=config.queue_age_window_s, tags_off_p95_s=config.tags_off_p95_s, clock=clock)
        self.metrics = metrics
        self.clock = clock
        #: why voice is off (the backend cannot be built), or None
        self.unavailable: str | None = None

    def request(self, user_id: str, turn_id: str, text: str, preset: str | None = None) -> dict[str, Any]:
        """Queue speech of ``text`` for the user; the chat answer's ``data.voice``.

        A database fault answers ``{"status": "unavailable"}``: speech is an
        extra and must not fail the turn.
        """
        if self.unavailable:
            return {"status": "unavailable"}
        try:
            return self._request(user_id, turn_id, text, preset)
        except sa.exc.SQLAlchemyError as exc:
            log.warning("voice unavailable: %s", type(exc).__name__)
            self.metrics.incr("voice.unavailable")
            return {"status": "unavailable"}

    def _request(self, user_id: str, turn_id: str, text: str, wanted_preset: str | None) -> dict[str, Any]:
        preset = self.config.preset_for(wanted_preset)
        tags = preset == EXPRESSIVE and self.health.tags_enabled()
        if preset == EXPRESSIVE and not tags:
            self.metrics.incr("voice.tags.dropped")
        whole = text if tags else strip_tags(text)
        spoken = fit(whole, self.config.max_text_chars)
        key = memo_key(self.config.backend, preset, spoken)
        now = self.clock()
        with self.store.engine.begin() as conn:
            quota = self.quota.charge(conn, user_id, len(spoken), now)
            if not quota.allowed:
                self.metrics.incr("voice.quota.exceeded")
                return {"status": "quota_exceeded", "quota": quota.as_json()}
            memoized = self._memoized(conn, key, now)
            job = {"user_id": user_id, "turn_id": uuid.UUID(turn_id), "backend": self.config.backend, "preset": preset, "memo_key": key}
            job_id = self.store.insert(conn, status="done" if memoized else "queued", now=now, text=spoken, chars=len(spoken), **job)
        if not memoized:
            self._enqueue(job_id)
        self._count(quota.warning, memoized, len(spoken))
        return {
            "status": "done" if memoized else "queued",
            "jobId": str(job_id),
            "url": job_url(job_id),
            "preset": preset,
            "chars": len(spoken),
            "truncated": len(spoken) < len(whole.strip()),
            "tags": tags,
            "quota": quota.as_json(),
        }

    def _memoized(self, conn: sa.Connection, key: str, now: datetime) -> bool:
        window = self.config.memo_window_s
        return window > 0 and self.store.fresh_audio_exists(conn, key, now - timedelta(seconds=window))

    def _enqueue(self, job_id: uuid.UUID) -> None:
        # The row is committed: if the broker is away, the worker's recovery hands the job out later.
        try:
            self.queue.enqueue(job_id)
        except Exception as exc:  # noqa: BLE001 - any broker fault; the job is safe in the database
            log.warning("voice job %s not handed to the queue (%s); recovery will", job_id, type(exc).__name__)
            self.metrics.incr("voice.enqueue_failed")

    def _count(self, warning: bool, memoized: bool, chars: int) -> None:
        self.metrics.incr("voice.jobs.memo_hit" if memoized else "voice.jobs.queued")
        self.metrics.incr("voice.chars.requested", chars)
        if warning:
            self.metrics.incr("voice.quota.warning")


def build_service(state, clock: Callable[[], datetime]) -> VoiceService:
    """The voice service of an app, from its settings, database and metrics.

    An unknown ``voice.backend`` stops the app (a typo); a known one that
    cannot be built (its library or key is missing) leaves voice off, with a
    log line: voiced turns answer ``unavailable`` rather than queue jobs no
    worker could run.
    """
    config = VoiceConfig.from_settings(state.settings, state.data_dir, state.plugin_config)
    backends = state.registries["voice_backends"]
    if config.backend not in backends.ids():
        raise ConfigError(f"invalid configuration: voice.backend: no voice_backends component {config.backend!r}")
    service = VoiceService(config, state.engine, state.metrics, clock)
    try:
        backends.get(config.backend)
    except ComponentUnavailable as exc:
        log.error("voice is off: %s", exc)
        service.unavailable = str(exc)
    return service


def voice_service(app: Flask | None = None) -> VoiceService:
    return (app or current_app).extensions[EXTENSION]

"""The voice job queue: huey on a SQLite file (embedded) or on Redis (shared by hosts).

The queue carries job ids only; the job itself lives in the database
(``store``). Producers (the web workers) and the consumer (``spiralogic
voice-worker``) register the same task, ``spiralogic.voice.queue.synthesize``;
only the consumer gives it a handler.
"""

from __future__ import annotations

import uuid
from typing import Callable

from huey import RedisHuey, SqliteHuey
from huey.api import Huey
from huey.consumer import Consumer
from redis import ConnectionPool

from spiralogic.voice.config import VoiceConfig

QUEUE_FILE = "voice-queue.db"
#: a request must not hang on an unreachable broker; BRPOP waits 1 s, so reads get longer
REDIS_CONNECT_TIMEOUT_S = 2
REDIS_READ_TIMEOUT_S = 5


def build_huey(config: VoiceConfig) -> Huey:
    if config.broker_url:
        pool = ConnectionPool.from_url(
            config.broker_url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S, socket_timeout=REDIS_READ_TIMEOUT_S
        )
        return RedisHuey(config.queue_name, results=False, connection_pool=pool)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey(config.queue_name, results=False, filename=str(config.data_dir / QUEUE_FILE))


class VoiceQueue:
    def __init__(self, config: VoiceConfig):
        self.config = config
        self.huey = build_huey(config)
        self.handler: Callable[[str], None] | None = None

        def synthesize(job_id: str) -> None:
            if self.handler is None:
                raise RuntimeError("voice jobs run in the voice worker (spiralogic voice-worker)")
            self.handler(job_id)

        self._task = self.huey.task(name="synthesize")(synthesize)

    def enqueue(self, job_id: uuid.UUID) -> None:
        self._task(str(job_id))

    def schedule(self, job_id: uuid.UUID, delay_s: float) -> None:
        self._task.schedule(args=(str(job_id),), delay=delay_s)

    def consumer(self) -> Consumer:
        # Polling SQLite is cheap: wait at most 1 s for new work rather than huey's 10 s.
        return self.huey.create_consumer(workers=self.config.workers, worker_type="thread", periodic=False, max_delay=1.0)

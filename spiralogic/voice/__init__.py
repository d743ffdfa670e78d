"""Speech synthesis of replies: a durable job queue, quotas, memoization and guards.

A chat turn with ``"voice": true`` only *queues* a job (``service``); a
separate worker process synthesizes it (``worker``) with the configured voice
backend plugin. The database row of each job is its source of truth
(``store``); the queue (huey, on SQLite or Redis) only carries job ids.
See docs/voice.md.
"""

from __future__ import annotations

#: the presets every voice backend understands, in the order of their cost and effect
PRESETS = ("natural", "calm", "expressive")
#: the one preset whose text keeps expressive tags ([whispers], [laughs], ...)
EXPRESSIVE = "expressive"


class SynthesisRejected(Exception):
    """A voice backend's answer that retrying cannot change (bad request, unknown voice, bad key).

    Backends raise it (or a subclass) to end the job ``failed`` at once; any
    other exception is retried with backoff.
    """

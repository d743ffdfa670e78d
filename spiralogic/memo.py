"""Memoized results in the app cache: where they are kept, and how they are purged.

Every memoized entry lives under ``memo:<namespace>:<digest>`` in the app's
flask-caching object. The digest (SHA-256 of the caller's normalised key)
keeps keys short whatever the input, and keeps user text out of the cache's
key space. Purging drops the ``memo:`` entries only, and counts them, on both
backends the app configures: the in-process SimpleCache and Redis.
"""

from __future__ import annotations

import hashlib
import logging
import re
from itertools import islice

from cachelib import SimpleCache
from cachelib.redis_base import BaseRedisCache
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
PREFIX = "memo:"
#: keys deleted per Redis round trip while purging
BATCH = 500


class CacheUnavailable(RuntimeError):
    """The cache backend could not be reached to purge it."""


def cache_key(namespace: str, key: str) -> str:
    return f"{PREFIX}{namespace}:{hashlib.sha256(key.encode()).hexdigest()}"


def clear(cache) -> int:
    """Drop every memoized entry from ``cache`` (a flask-caching ``Cache``); return how many there were."""
    backend = cache.cache
    if isinstance(backend, BaseRedisCache):
        try:
            dropped = _clear_redis(backend)
        except RedisError as exc:
            raise CacheUnavailable(f"cannot reach the cache: {type(exc).__name__}: {exc}") from exc
    elif isinstance(backend, SimpleCache):
        dropped = _clear_simple(backend)
    else:
        raise TypeError(f"cannot purge memoized entries from a {type(backend).__name__}")
    log.info("memo cache purged: %d entries dropped", dropped)
    return dropped


def _clear_redis(backend: BaseRedisCache) -> int:
    # Only keys under the app's prefix: the database may be shared, so never FLUSHDB.
    # cachelib keeps no public handle on its client; this is the one it writes with.
    client = backend._write_client
    pattern = _glob_escape(f"{backend.key_prefix or ''}{PREFIX}") + "*"
    keys = client.scan_iter(match=pattern, count=BATCH)
    dropped = 0
    while batch := list(islice(keys, BATCH)):
        dropped += client.unlink(*batch)  # counts only keys that still existed
    return dropped


def _clear_simple(backend: SimpleCache) -> int:
    # cachelib's SimpleCache cannot list its keys; its dict is the only way to count them.
    with backend._lock:
        keys = [key for key in backend._cache if key.startswith(PREFIX)]
        dropped = 0
        for key in keys:
            dropped += backend.has(key)  # an expired entry still in the dict is not counted
            backend.delete(key)
        return dropped


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)

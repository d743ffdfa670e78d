"""Rate limits per user and per client address (flask-limiter).

A view calls ``check(user_id)`` once its body is valid: the request counts
against its client address's limit and its user's limit, each endpoint apart.
Past either, the answer is 429 ``rate_limited`` with ``Retry-After``. Counters
live in Redis when ``cache_redis_url`` is set, so workers and hosts share them;
if Redis stops answering, each worker counts in memory until it is back, and a
request is never failed by the limiter itself.

The client address is the TCP peer, unless ``rate_limits.trusted_proxies`` is
above 0: then it is taken from ``X-Forwarded-For`` that many hops from the right
(werkzeug's ProxyFix), which only proxies the operator runs may be trusted with.
"""

from __future__ import annotations

import math
import time

from flask import Flask, current_app, g
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from spiralogic.errors import HTTP_CODES, error_response
from spiralogic.state import app_state

EXTENSION = "spiralogic.limits"
#: a Redis that stops answering must cost a request milliseconds, not seconds
REDIS_OPTIONS = {"socket_connect_timeout": 0.2, "socket_timeout": 0.2}


def init_app(app: Flask, settings) -> None:
    rules = settings.rate_limits
    if rules.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=rules.trusted_proxies, x_proto=0)
    redis_url = settings.cache_redis_url
    limiter = Limiter(
        get_remote_address,
        app=app,
        storage_uri=redis_url or "memory://",
        storage_options=REDIS_OPTIONS if redis_url else {},
        key_prefix="spiralogic",
        in_memory_fallback_enabled=True,
        swallow_errors=True,
        enabled=rules.enabled,
    )
    app.extensions[EXTENSION] = limiter
    app.register_error_handler(RateLimitExceeded, _rate_limited)


def check(user_id: str) -> None:
    """Count this request against its address's and its user's limits; raise 429 past either."""
    limiter: Limiter = current_app.extensions[EXTENSION]
    if not limiter.enabled:
        return  # flask-limiter would still resolve both limits on every request
    rules = app_state().turn_settings
    g.rate_limit_user = user_id
    # flask-limiter tells limits used as context managers apart by their line: one per statement.
    with limiter.limit(rules.rate_limit_per_address, scope="address"):
        pass
    with limiter.limit(rules.rate_limit_per_user, key_func=_user, scope="user"):
        pass


def _user() -> str:
    return g.rate_limit_user


def _rate_limited(exc: RateLimitExceeded):
    breached = current_app.extensions[EXTENSION].current_limit
    retry_after = max(1, math.ceil(breached.window.reset_time - time.time())) if breached else 1
    message = f"too many requests ({exc.description}); retry in {retry_after} s"
    return error_response(429, HTTP_CODES[429], message, None, {"Retry-After": str(retry_after)})

"""Signing in a browser to the admin pages that only read.

A browser cannot send the bearer token on a page load, so ``POST
/admin/login`` trades the token for a cookie: a signed, timestamped marker
(itsdangerous) whose key is derived from the admin token itself, so rotating
the token signs every browser out. The cookie is HttpOnly and SameSite=Strict
and admits only views wrapped in :func:`require_viewer`; everything that
changes state keeps :func:`spiralogic.admin.require_admin`, which reads the
bearer header alone, so a cookie cannot be ridden into a change (no CSRF
surface).
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from functools import wraps

from flask import Response, redirect, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from spiralogic.admin import require_admin
from spiralogic.errors import ApiError
from spiralogic.state import app_state

COOKIE = "spiralogic_admin"
#: the cookie is sent back only to the admin surface
COOKIE_PATH = "/admin"
LIFETIME = timedelta(hours=12)
SALT = "spiralogic.admin-session"
MARKER = "admin"


def configured_token() -> str:
    """The admin token; without one the whole admin surface is hidden (404)."""
    token = app_state().settings.admin_token
    if not token:
        raise ApiError(404, "not_found", "The requested URL was not found on the server.")
    return token


def token_matches(given: str, token: str) -> bool:
    # Constant-time comparison, as for the bearer header: no timing leak of the token.
    return hmac.compare_digest(given.encode(), token.encode())


def sign_in(response: Response, token: str) -> Response:
    response.set_cookie(
        COOKIE,
        _signer(token).dumps(MARKER),
        max_age=int(LIFETIME.total_seconds()),
        path=COOKIE_PATH,
        secure=request.is_secure,
        httponly=True,
        samesite="Strict",
    )
    return response


def sign_out(response: Response) -> Response:
    response.delete_cookie(COOKIE, path=COOKIE_PATH, secure=request.is_secure, httponly=True, samesite="Strict")
    return response


def signed_in(token: str) -> bool:
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return False
    try:
        return _signer(token).loads(cookie, max_age=LIFETIME.total_seconds()) == MARKER
    except BadSignature:  # also an expired one (SignatureExpired)
        return False


def require_viewer(login: str | None = None):
    """Admit the sign-in cookie or the bearer header. Without either, a page (``login``: the
    sign-in form's endpoint) sends the browser there; anything else answers 401 as
    :func:`require_admin` does."""

    def decorate(view):
        with_bearer = require_admin(view)

        @wraps(view)
        def guarded(*args, **kwargs):
            if signed_in(configured_token()):
                return view(*args, **kwargs)
            if login and "Authorization" not in request.headers:
                return redirect(url_for(login))
            return with_bearer(*args, **kwargs)

        return guarded

    return decorate


def _signer(token: str) -> URLSafeTimedSerializer:
    # itsdangerous derives the HMAC key from the secret and the salt: a key of its own, from the token.
    return URLSafeTimedSerializer(token, salt=SALT)

"""The operator's launch dashboard, ``GET /admin/dashboard``, and the browser sign-in.

The page is static HTML plus ``static/dashboard.js``, which draws
``GET /admin/dashboard/data`` with the vendored uPlot and asks again every
``REFRESH_MS``. Both accept the bearer token or the sign-in cookie
(:mod:`spiralogic.admin_session`).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect, render_template, request, url_for

from spiralogic import dashboard, monitoring
from spiralogic.admin_session import configured_token, require_viewer, sign_in, sign_out, signed_in, token_matches
from spiralogic.clock import utcnow
from spiralogic.errors import ApiError
from spiralogic.state import app_state
from spiralogic.turn import ORCHESTRATORS

bp = Blueprint("admin_dashboard", __name__, url_prefix="/admin")
LOGIN = "admin_dashboard.login_form"
REFRESH_MS = 10_000
#: the pages load nothing but their own files (no inline script or style) and are never framed
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@bp.after_request
def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


@bp.get("/login")
def login_form():
    if signed_in(configured_token()):
        return redirect(url_for(".page"))
    return render_template("login.html")


@bp.post("/login")
def login():
    token = configured_token()
    if not token_matches(request.form.get("token", ""), token):
        return render_template("login.html", failed=True), 401
    return sign_in(redirect(url_for(".page"), 303), token)


@bp.post("/logout")
def logout():
    configured_token()
    return sign_out(redirect(url_for(".login_form"), 303))


@bp.get("/dashboard")
@require_viewer(login=LOGIN)
def page():
    return render_template("dashboard.html", refresh_ms=REFRESH_MS, orchestrators=ORCHESTRATORS)


@bp.get("/dashboard/data")
@require_viewer()
def data():
    """``?window=2h`` (5m..1d) and ``?orchestrator=`` (default: every turn)."""
    orchestrator = request.args.get("orchestrator") or None
    if orchestrator not in (None, *ORCHESTRATORS):
        raise ApiError(422, "invalid_value", f"orchestrator: one of {', '.join(ORCHESTRATORS)}", "orchestrator")
    try:
        window = dashboard.parse_window(request.args.get("window"))
    except monitoring.WindowError as exc:
        raise ApiError(422, "invalid_value", str(exc), exc.field) from exc
    return jsonify(dashboard.snapshot(app_state(), window, utcnow(), orchestrator))

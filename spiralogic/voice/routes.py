"""``GET /api/oracle/voice/<jobId>``: a voice job's status, and its audio once done.

JSON by default; the audio itself with ``?download=1`` (as an attachment) or
when the ``Accept`` header prefers audio (inline, for an ``<audio>`` element).
Audio is served with ``send_file(conditional=True)``: ETag, ``If-None-Match``
and ``Range`` requests (seeking in a player) work.
"""

from __future__ import annotations

import io
import mimetypes
import uuid
from datetime import datetime
from typing import Any, Callable

from flask import Blueprint, Flask, jsonify, request, send_file

from spiralogic.errors import ApiError
from spiralogic.state import app_state
from spiralogic.voice.service import EXTENSION, JOB_PATH, build_service, job_url, voice_service
from spiralogic.voice.store import utc

bp = Blueprint("voice", __name__)
#: audio type -> file extension; also what a client may ask for before the job's own type is known
EXTENSIONS = {"audio/wav": ".wav", "audio/mpeg": ".mp3", "audio/ogg": ".ogg", "audio/aac": ".aac", "audio/flac": ".flac"}
#: a done job's audio never changes; players may keep it this long (s)
AUDIO_MAX_AGE_S = 3600
NOT_READY_RETRY_AFTER_S = "2"


def init_app(app: Flask, clock: Callable[[], datetime]) -> None:
    """Build the app's voice service and serve the job endpoint."""
    app.extensions[EXTENSION] = build_service(app_state(app), clock)
    app.register_blueprint(bp)


@bp.get(JOB_PATH.replace("{job_id}", "<job_id>"))
def job(job_id: str):
    found = _find(job_id)
    if _wants_audio(found["audio"]["content_type"] if found["audio"] else None):
        return _audio(found)
    return jsonify({"data": describe(found)})


def _find(job_id: str) -> dict[str, Any]:
    try:
        found = voice_service().store.get(uuid.UUID(job_id))
    except ValueError:
        found = None
    if found is None:
        raise ApiError(404, "not_found", "no voice job has this id")
    return found


def _download() -> bool:
    return request.args.get("download", "").lower() in ("1", "true")


def _wants_audio(content_type: str | None) -> bool:
    if _download():
        return True
    offers = ["application/json", *([content_type] if content_type else EXTENSIONS)]
    # Equal preference (*/*, or no Accept) picks the first offer: JSON.
    return request.accept_mimetypes.best_match(offers) not in (None, "application/json")


def _audio(found: dict[str, Any]):
    status = found["status"]
    if status in ("queued", "running"):
        retry = {"Retry-After": NOT_READY_RETRY_AFTER_S}
        raise ApiError(409, "voice_not_ready", f"the audio is not ready yet (job {status})", headers=retry)
    if status == "failed":
        raise ApiError(409, "voice_failed", f"speech synthesis failed: {found['error']}")
    audio = voice_service().store.audio(found["id"])
    if audio is None:
        raise ApiError(410, "voice_expired", "the audio of this job is no longer kept")
    response = send_file(
        io.BytesIO(audio.data),
        mimetype=audio.content_type,
        as_attachment=_download(),
        download_name=f"voice-{found['id']}{EXTENSIONS.get(audio.content_type) or mimetypes.guess_extension(audio.content_type) or ''}",
        conditional=True,
        etag=found["memo_key"],
        max_age=AUDIO_MAX_AGE_S,
    )
    # The job id is the user's capability: keep the audio out of shared caches.
    response.cache_control.public = False
    response.cache_control.private = True
    response.vary.add("Accept")
    return response


def describe(found: dict[str, Any]) -> dict[str, Any]:
    """A job as the API shows it (never its text or which backend spoke it)."""
    audio = found["audio"]
    return {
        "jobId": str(found["id"]),
        "status": found["status"],
        "preset": found["preset"],
        "chars": found["chars"],
        "memoHit": found["memo_hit"],
        "attempts": found["attempts"],
        "createdAt": _iso(found["created_at"]),
        "startedAt": _iso(found["started_at"]),
        "finishedAt": _iso(found["finished_at"]),
        "error": found["error"] if found["status"] == "failed" else None,
        "audio": (
            {"url": f"{job_url(found['id'])}?download=1", "contentType": audio["content_type"], "bytes": audio["bytes"]}
            if audio
            else None
        ),
    }


def _iso(moment: datetime | None) -> str | None:
    return utc(moment).isoformat() if moment else None

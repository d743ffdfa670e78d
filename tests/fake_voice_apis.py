"""A local HTTP server speaking ElevenLabs' and OpenAI's text-to-speech wire protocols.

- ElevenLabs: ``POST /v1/text-to-speech/{voice_id}?output_format=...`` with the
  ``xi-api-key`` header and a JSON body ``{"text", "model_id", "voice_settings"}``;
  the answer is the audio (``audio/mpeg``), an error is ``{"detail": {...}}``.
- OpenAI: ``POST /v1/audio/speech`` with ``Authorization: Bearer <key>`` and
  ``{"model", "voice", "input", "response_format", ...}``; the answer is the
  audio, an error is ``{"error": {"message", "type", "code"}}``.

The voice plugins are pointed at it through their ``base_url``. Each request
takes the next behaviour from ``script(...)`` (then ``default``): ``normal``,
``hold`` (answer only once ``release()`` is called: a synthesis in progress),
or an HTTP status such as ``503`` or ``401``. Every request is recorded, with
when it arrived.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import time
import wave
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

API_KEY = "test-voice-key"
HOLD_S = 60.0


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


def fake_mp3(text: str) -> bytes:
    """Stand-in MP3 bytes, different for every text (an ID3 header, then a digest)."""
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + hashlib.sha256(text.encode()).digest() * 8


def silent_wav(seconds: float = 0.1, rate: int = 24000) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"\x00\x00" * int(seconds * rate))
    return buffer.getvalue()


class FakeSpeechServer:
    def __init__(self, default: str | int = "normal"):
        self.default = default
        self.requests: list[Seen] = []
        self._script: deque[str | int] = deque()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeSpeechServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def script(self, *behaviours: str | int) -> None:
        self._script.extend(behaviours)

    def release(self) -> None:
        self._released.set()

    def wait_for_requests(self, count: int, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"the server got {len(self.requests)} requests, not {count}"
            time.sleep(0.05)

    def _next(self) -> str | int:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                url = urlsplit(self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"{}")
                seen = Seen(url.path, parse_qs(url.query), {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                fake.requests.append(seen)
                behaviour = fake._next()
                if behaviour == "hold":
                    fake._released.wait(HOLD_S)
                if url.path.startswith("/v1/text-to-speech/"):
                    self._elevenlabs(seen, behaviour)
                elif url.path == "/v1/audio/speech":
                    self._openai(seen, behaviour)
                else:
                    self._send(404, "application/json", b'{"detail": "not found"}')

            def _elevenlabs(self, seen: Seen, behaviour: str | int) -> None:
                if seen.headers.get("xi-api-key") != API_KEY:
                    behaviour = 401
                if isinstance(behaviour, int):
                    detail = {"status": "invalid_api_key" if behaviour == 401 else "error", "message": f"fake failure {behaviour}"}
                    self._send(behaviour, "application/json", json.dumps({"detail": detail}).encode())
                    return
                self._send(200, "audio/mpeg", fake_mp3(seen.body["text"]))

            def _openai(self, seen: Seen, behaviour: str | int) -> None:
                if seen.headers.get("authorization") != f"Bearer {API_KEY}":
                    behaviour = 401
                if isinstance(behaviour, int):
                    error = {"message": f"fake failure {behaviour}", "type": "invalid_request_error", "code": None, "param": None}
                    self._send(behaviour, "application/json", json.dumps({"error": error}).encode())
                    return
                audio = silent_wav() if seen.body.get("response_format") == "wav" else fake_mp3(seen.body["input"])
                self._send(200, "audio/wav" if seen.body.get("response_format") == "wav" else "audio/mpeg", audio)

            def _send(self, status: int, content_type: str, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client went away (a killed worker)

        return Handler

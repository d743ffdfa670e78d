"""A local HTTP server speaking OpenAI's and Anthropic's wire protocols, with scripted faults.

``FakeLLMServer`` answers ``POST /v1/chat/completions`` as OpenAI does (SSE
``data: {...}`` chunks ending with ``data: [DONE]``, or one JSON body when the
request does not stream) and ``POST /v1/messages`` as Anthropic does (SSE
events ``message_start`` ... ``message_stop``, or one JSON body). The official
clients are pointed at it through ``base_url``, so every byte they parse is
the real wire format.

Each request takes the next behaviour from the script (``script(...)``), or
``default`` once the script is used up:

- ``normal``: the whole reply, streamed;
- ``slow_first_byte``: the same, after ``delay_s`` of silence;
- ``hang``: nothing at all, until the server stops;
- ``stall``: the headers and the first piece of text, then nothing; a client
  that hangs up meanwhile is counted in ``disconnects``;
- ``rate_limited`` / ``unavailable``: 429 / 503 with ``Retry-After: <retry_after>``;
- ``bad_request``: 400, a fault of this one request rather than of the server;
- ``error``: 500, with an error body that echoes the caller's API key (as a
  careless upstream might) so tests can check it never reaches a log;
- ``cut``: the first piece of text, then the connection drops mid-body;
- ``truncated``: every piece of text, then a clean end without the end marker;
- ``malformed``: the first piece of text, then an event whose JSON is broken.

Every request is recorded in ``requests`` (path, headers, JSON body).
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY_CHUNKS = ("The path ", "becomes clear ", "as you walk it.")
REPLY = "".join(REPLY_CHUNKS)
PROMPT_TOKENS = 42
COMPLETION_TOKENS = 9
# A hang or stall lasts until the server stops, or this long at most.
HANG_S = 30.0


@dataclass(frozen=True)
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    return (f"event: {event}\n" if event else "").encode() + f"data: {payload}\n\n".encode()


# -- The two protocols -------------------------------------------------------


class OpenAIWire:
    """Chat completions: chunks with deltas, a finish_reason, an optional usage chunk, [DONE]."""

    @staticmethod
    def stream(body: dict[str, Any]) -> tuple[list[bytes], list[bytes], list[bytes]]:
        """(head, one frame per text piece, end) of a streamed reply."""
        model = body.get("model", "")

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            return sse({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model, "choices": choices, **extra})

        texts = [
            chunk([{"index": 0, "delta": {"role": "assistant", "content": piece} if i == 0 else {"content": piece}, "finish_reason": None}])
            for i, piece in enumerate(REPLY_CHUNKS)
        ]
        end = [chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}])]
        if (body.get("stream_options") or {}).get("include_usage"):
            end.append(chunk([], usage=OpenAIWire.usage()))
        end.append(sse("[DONE]"))
        return [], texts, end

    @staticmethod
    def usage() -> dict[str, int]:
        return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS, "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}

    @staticmethod
    def whole(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 0,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop"}],
            "usage": OpenAIWire.usage(),
        }

    @staticmethod
    def error(status: int, message: str) -> dict[str, Any]:
        kind = "server_error" if status >= 500 else "rate_limit_error" if status == 429 else "invalid_request_error"
        return {"error": {"message": message, "type": kind, "code": None}}

    malformed = sse('{"id": "chatcmpl-fake", "choices": [{"delta": ')


class AnthropicWire:
    """Messages: message_start, content block events, message_delta with usage, message_stop."""

    @staticmethod
    def stream(body: dict[str, Any]) -> tuple[list[bytes], list[bytes], list[bytes]]:
        message = {**AnthropicWire.whole(body), "content": [], "stop_reason": None, "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1}}
        head = [
            sse({"type": "message_start", "message": message}, "message_start"),
            sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}, "content_block_start"),
            sse({"type": "ping"}, "ping"),
        ]
        texts = [
            sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
            for piece in REPLY_CHUNKS
        ]
        end = [
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse(
                {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": COMPLETION_TOKENS}},
                "message_delta",
            ),
            sse({"type": "message_stop"}, "message_stop"),
        ]
        return head, texts, end

    @staticmethod
    def whole(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": body.get("model", ""),
            "content": [{"type": "text", "text": REPLY}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS},
        }

    @staticmethod
    def error(status: int, message: str) -> dict[str, Any]:
        kinds = {400: "invalid_request_error", 429: "rate_limit_error", 500: "api_error"}
        kind = kinds.get(status, "overloaded_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    malformed = sse('{"type": "content_block_delta", "index": 0, "delta": ', "content_block_delta")


WIRES = {"/v1/chat/completions": OpenAIWire, "/v1/messages": AnthropicWire}


# -- The server --------------------------------------------------------------


class FakeLLMServer:
    """Both protocols on one loopback port; use as a context manager."""

    def __init__(self, default: str = "normal", delay_s: float = 0.0, retry_after: str = "0"):
        self.default = default
        self.delay_s = delay_s
        self.retry_after = retry_after
        self.requests: list[Seen] = []
        self.disconnects = 0
        self.released = threading.Event()
        self._script: deque[str] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        """The Anthropic client's base_url (it adds /v1/messages)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def openai_url(self) -> str:
        """The OpenAI client's base_url (it adds /chat/completions)."""
        return f"{self.url}/v1"

    def script(self, *behaviours: str) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def next_behaviour(self) -> str:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    def record(self, seen: Seen) -> None:
        with self._lock:
            self.requests.append(seen)

    def record_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.released.set()  # ends hangs and stalls, so the server can stop
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read what they need from ``requests``."""

    def do_POST(self) -> None:
        fake: FakeLLMServer = self.server.fake  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        fake.record(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        wire = WIRES.get(self.path)
        if wire is None:
            return self._json(404, {"error": {"message": f"no route {self.path}"}})
        behaviour = fake.next_behaviour()
        if behaviour == "slow_first_byte":
            fake.released.wait(fake.delay_s)
        if behaviour == "hang":
            fake.released.wait(HANG_S)
            return self._drop()
        if behaviour in ("rate_limited", "unavailable"):
            status = 429 if behaviour == "rate_limited" else 503
            return self._json(status, wire.error(status, "slow down"), {"Retry-After": fake.retry_after})
        if behaviour == "bad_request":
            return self._json(400, wire.error(400, "invalid request"))
        if behaviour == "error":
            key = self.headers.get("Authorization", "") or self.headers.get("x-api-key", "")
            return self._json(500, wire.error(500, f"internal error for credentials {key}"))
        if not body.get("stream"):
            return self._json(200, wire.whole(body))
        head, texts, end = wire.stream(body)
        self._stream_start()
        if behaviour == "stall":
            self._frames(head + texts[:1])
            self._await_hang_up(fake)
            return self._drop()
        if behaviour == "cut":
            self._frames(head + texts[:1])
            return self._drop()
        if behaviour == "malformed":
            self._frames(head + texts[:1] + [wire.malformed])
        elif behaviour == "truncated":
            self._frames(head + texts)
        else:
            self._frames(head + texts + end)
        self.wfile.write(b"0\r\n\r\n")

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _stream_start(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _frames(self, frames: list[bytes]) -> None:
        for frame in frames:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(frame), frame))

    def _await_hang_up(self, fake: FakeLLMServer) -> None:
        """Send nothing until the server stops or the client closes the connection."""
        deadline = time.monotonic() + HANG_S
        while not fake.released.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.05)
            if readable and not self.connection.recv(1, socket.MSG_PEEK):
                fake.record_disconnect()
                return

    def _drop(self) -> None:
        """Close the connection mid-response, without the chunked body's terminator."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

#!/usr/bin/env python3
"""A small fake of the Anthropic Messages API, for running the real ``claude`` CLI offline.

Usage from tests::

    with FakeMessagesAPI() as api:
        env = {"ANTHROPIC_BASE_URL": api.url, "ANTHROPIC_API_KEY": "sk-test", ...}
        ...
        api.requests[-1]["body"]["messages"]

Responses, in order of precedence for each ``POST /v1/messages``:

1. the next item of ``api.responses`` (a queue; push with :meth:`FakeMessagesAPI.push`),
2. ``responder(body)`` if given,
3. ``default_text`` with a usage computed from the body size.

Each response is a ``(text, usage)`` tuple, a :class:`Reply` (text or explicit content blocks,
usage, stop reason, delay) or an :class:`APIError` (HTTP status with an Anthropic error body).

Manual use: ``python fake_messages_api.py --port 8765 [--text "hello"]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import urlsplit

__all__ = ["APIError", "FakeMessagesAPI", "Reply", "estimate_input_tokens"]

Usage = dict[str, Any]


@dataclass
class Reply:
    """One successful model answer."""

    text: str = "Hello from the fake Messages API."
    usage: Usage | None = None
    # Explicit content blocks (e.g. a tool_use block) instead of a single text block.
    content: list[dict[str, Any]] | None = None
    stop_reason: str = "end_turn"
    # Seconds to wait before answering (simulates a slow model).
    delay: float = 0.0
    # Streaming: put only output_tokens in message_delta's usage (older API behaviour).
    delta_output_only: bool = False


@dataclass
class APIError:
    """An HTTP error answer with the Anthropic error body."""

    status: int = 500
    error_type: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    _TYPES: ClassVar[dict[int, str]] = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        500: "api_error",
        529: "overloaded_error",
    }
    _MESSAGES: ClassVar[dict[int, str]] = {
        429: (
            "This request would exceed your organization's rate limit of 30,000 input tokens per minute. "
            "For details, refer to: https://docs.claude.com/en/api/rate-limits."
        ),
        529: "Overloaded",
        500: "Internal server error",
    }

    def body(self) -> dict[str, Any]:
        etype = self.error_type or self._TYPES.get(self.status, "api_error")
        msg = self.message or self._MESSAGES.get(self.status, "Error")
        return {"type": "error", "error": {"type": etype, "message": msg}}


Response = tuple[str, Usage] | Reply | APIError
Responder = Callable[[dict[str, Any]], Response]

DEFAULT_MODEL = "claude-sonnet-4-5-20250929"


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """Deterministic token estimate: 1 token per 4 characters of system + messages + tools."""
    parts = [body.get("system", ""), body.get("messages", []), body.get("tools", [])]
    return max(1, len(json.dumps(parts, ensure_ascii=False)) // 4)


def _full_usage(usage: Usage | None, body: dict[str, Any], output_tokens: int) -> Usage:
    full: Usage = {
        "input_tokens": estimate_input_tokens(body),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }
    if usage:
        full.update(usage)
    return full


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.api.verbose:
            super().log_message(format, *args)

    # -- helpers -------------------------------------------------------------------------
    def _send_json(self, status: int, obj: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", "req_fake_" + uuid.uuid4().hex[:20])
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _record(self, body: Any) -> None:
        parts = urlsplit(self.path)
        self.server.api._record(
            {
                "method": self.command,
                "path": parts.path,
                "query": parts.query,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
                "time": time.time(),
            }
        )

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")

    # -- verbs ---------------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._record(None)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._record(None)
        path = urlsplit(self.path).path
        if path == "/":
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            self._not_found(path)

    def do_POST(self) -> None:
        body = self._read_body()
        self._record(body)
        path = urlsplit(self.path).path
        if path == "/v1/messages":
            self._messages(body if isinstance(body, dict) else {})
        elif path == "/v1/messages/count_tokens":
            self._send_json(200, {"input_tokens": estimate_input_tokens(body if isinstance(body, dict) else {})})
        else:
            self._not_found(path)

    def _not_found(self, path: str) -> None:
        self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": f"Not found: {path}"}})

    def _messages(self, body: dict[str, Any]) -> None:
        resp = self.server.api._next_response(body)
        if isinstance(resp, APIError):
            extra = dict(resp.headers)
            if resp.status == 429:
                extra.setdefault("retry-after", "1")
            self._send_json(resp.status, resp.body(), extra)
            return
        if resp.delay:
            time.sleep(resp.delay)
        content = resp.content if resp.content is not None else [{"type": "text", "text": resp.text}]
        out_default = max(1, sum(len(json.dumps(b)) for b in content) // 4)
        usage = _full_usage(resp.usage, body, out_default)
        model = body.get("model") or DEFAULT_MODEL
        msg_id = "msg_fake_" + uuid.uuid4().hex[:24]
        if not body.get("stream"):
            self._send_json(
                200,
                {
                    "id": msg_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": resp.stop_reason,
                    "stop_sequence": None,
                    "usage": usage,
                },
            )
            return
        self._stream(msg_id, model, content, usage, resp.stop_reason, resp.delta_output_only)

    def _stream(
        self,
        msg_id: str,
        model: str,
        content: list[dict[str, Any]],
        usage: Usage,
        stop_reason: str,
        delta_output_only: bool = False,
    ) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.send_header("request-id", "req_fake_" + uuid.uuid4().hex[:20])
        self.end_headers()
        self.close_connection = True
        start_usage = dict(usage)
        start_usage["output_tokens"] = 1
        chunks = [
            _sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": msg_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
        ]
        for i, block in enumerate(content):
            if block.get("type") == "text":
                chunks.append(
                    _sse(
                        "content_block_start",
                        {"type": "content_block_start", "index": i, "content_block": {"type": "text", "text": ""}},
                    )
                )
                if i == 0:
                    chunks.append(_sse("ping", {"type": "ping"}))
                chunks.append(
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": block.get("text", "")},
                        },
                    )
                )
            elif block.get("type") == "tool_use":
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                chunks.append(
                    _sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": start})
                )
                chunks.append(
                    _sse(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": json.dumps(block.get("input", {}))},
                        },
                    )
                )
            else:
                chunks.append(
                    _sse("content_block_start", {"type": "content_block_start", "index": i, "content_block": block})
                )
            chunks.append(_sse("content_block_stop", {"type": "content_block_stop", "index": i}))
        chunks.append(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": usage["output_tokens"]} if delta_output_only else usage,
                },
            )
        )
        chunks.append(_sse("message_stop", {"type": "message_stop"}))
        try:
            for c in chunks:
                self.wfile.write(c)
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: FakeMessagesAPI


class FakeMessagesAPI:
    """A fake Anthropic Messages API bound to 127.0.0.1, served from a background thread."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        default_text: str = "Hello from the fake Messages API.",
        default_usage: Usage | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        verbose: bool = False,
    ) -> None:
        self.responder = responder
        self.default_text = default_text
        self.default_usage = default_usage
        self.host = host
        self.port = port
        self.verbose = verbose
        self.requests: list[dict[str, Any]] = []
        self.responses: deque[Response] = deque()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._counter = itertools.count(1)

    # -- configuration -------------------------------------------------------------------
    def push(self, *responses: Response) -> None:
        """Queue responses for the next ``POST /v1/messages`` calls, in order."""
        with self._lock:
            self.responses.extend(responses)

    @property
    def messages_requests(self) -> list[dict[str, Any]]:
        """Recorded ``POST /v1/messages`` requests only."""
        with self._lock:
            return [r for r in self.requests if r["method"] == "POST" and r["path"] == "/v1/messages"]

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def _next_response(self, body: dict[str, Any]) -> Reply | APIError:
        with self._lock:
            queued = self.responses.popleft() if self.responses else None
        resp: Response
        if queued is not None:
            resp = queued
        elif self.responder is not None:
            resp = self.responder(body)
        else:
            resp = Reply(self.default_text, self.default_usage)
        if isinstance(resp, tuple):
            text, usage = resp
            return Reply(text, usage)
        return resp

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeMessagesAPI:
        self._server = _Server((self.host, self.port), _Handler)
        self._server.api = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-messages-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeMessagesAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fake Anthropic Messages API")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--text", default="Hello from the fake Messages API.")
    ap.add_argument("--status", type=int, default=0, help="answer every message request with this HTTP error")
    ap.add_argument("--dump", help="append each recorded request as a JSON line to this file")
    args = ap.parse_args(argv)

    def responder(body: dict[str, Any]) -> Response:
        if args.status:
            return APIError(args.status)
        return Reply(args.text)

    api = FakeMessagesAPI(responder, host=args.host, port=args.port, verbose=True)
    if args.dump:
        dump_path = args.dump
        orig = api._record

        def record(entry: dict[str, Any]) -> None:
            orig(entry)
            with open(dump_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(entry, ensure_ascii=False) + "\n")

        api._record = record  # type: ignore[method-assign]
    api.start()
    print(api.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

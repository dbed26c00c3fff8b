"""A real HTTP server on 127.0.0.1 that plays an OpenAI-compatible chat API from a script.

Tests give it a function ``respond(request_body, call_index) -> Reply``; it records every request
(headers, JSON body, arrival time) so that tests can assert on what the client sent and when.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (timeouts)


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    time: float


def chat_reply(text: str, finish_reason: str = "stop", usage: dict[str, int] | None = None) -> Reply:
    body: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
    }
    if usage is not None:
        body["usage"] = usage
    return Reply(200, body)


def error_reply(
    status: int, message: str, code: str | None = None, headers: dict[str, str] | None = None
) -> Reply:
    return Reply(status, {"error": {"message": message, "type": "error", "code": code}}, headers or {})


@dataclass
class ScriptedServer:
    url: str
    requests: list[Recorded]


@contextmanager
def scripted_server(respond: Callable[[dict[str, Any], int], Reply]) -> Iterator[ScriptedServer]:
    """Serve ``respond`` on a free port of 127.0.0.1; yields the base URL (``.../v1``) and the request log."""
    requests: list[Recorded] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with lock:
                index = len(requests)
                requests.append(Recorded(self.path, dict(self.headers), body, time.monotonic()))
            reply = respond(body, index)
            if reply.delay:
                time.sleep(reply.delay)
            payload = json.dumps(reply.body).encode() if not isinstance(reply.body, bytes) else reply.body
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client timed out and went away

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield ScriptedServer(f"http://127.0.0.1:{server.server_address[1]}/v1", requests)
    finally:
        server.shutdown()
        server.server_close()

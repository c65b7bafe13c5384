"""A real HTTP server on 127.0.0.1 that speaks OpenAI chat completions, scriptable per test.

    with Upstream() as up:
        up.script("500", "500", "ok")          # then "ok" for every further request
        ... base_url=up.base_url ...          # http://127.0.0.1:<port>/v1
        up.requests                            # what it received, in order

Behaviours (strings or tuples): ``"ok"`` or ``("ok", {"prompt_tokens": 1000, ...})`` (usage),
``("slow", ms)`` (sleep, then ok), ``500`` or any status as an int or ``"500"`` (an OpenAI error
body), ``("429", retry_after_seconds)``, ``"close"`` (read the request, close the connection
without answering). ``free_port()`` gives a port where nothing listens.
"""

import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_USAGE = {"prompt_tokens": 10, "completion_tokens": 5}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() when the request arrived
    client_port: int  # the client's port: the same for requests over one kept-alive connection


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (a connection to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _completion(model: str, usage: dict[str, int]) -> dict[str, Any]:
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "id": "chatcmpl-upstream-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "hello from upstream"},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    upstream: "Upstream"

    def handle_error(self, request, client_address):
        pass  # a client that timed out and left: a broken pipe is expected, not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):
        pass

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, headers: dict[str, str] | None = None):
        kind = "invalid_request_error" if status < 500 else "server_error"
        payload = {"error": {"message": f"upstream says {status}", "type": kind, "code": None}}
        self._send_json(status, payload, headers)

    def do_POST(self):
        up = self.server.upstream
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode(errors="replace")
        up._log(
            Received(
                self.path,
                dict(self.headers.items()),
                body,
                time.monotonic(),
                self.client_address[1],
            )
        )
        if self.path != "/v1/chat/completions":
            self._error(404)
            return
        kind, arg = up._next()
        model = body.get("model", "") if isinstance(body, dict) else ""
        if kind == "close":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "slow":
            time.sleep(arg / 1000)
            kind, arg = "ok", None
        if kind == "ok":
            self._send_json(200, _completion(model, arg or DEFAULT_USAGE))
        elif kind == "429":
            self._error(429, {} if arg is None else {"Retry-After": str(arg)})
        else:
            self._error(int(kind))


class Upstream:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[tuple[str, Any]] = deque()
        self.requests: list[Received] = []
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.upstream = self
        self.port = self._server.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> "Upstream":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "Upstream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def script(self, *behaviours: Any) -> None:
        """Queue behaviours, one per request; when the queue is empty, requests get ``ok``."""
        with self._lock:
            for behaviour in behaviours:
                if isinstance(behaviour, tuple):
                    kind, arg = behaviour
                else:
                    kind, arg = behaviour, None
                self._queue.append((str(kind), arg))

    def _next(self) -> tuple[str, Any]:
        with self._lock:
            return self._queue.popleft() if self._queue else ("ok", None)

    def _log(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

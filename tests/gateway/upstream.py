"""A real HTTP server on 127.0.0.1 that speaks two providers' wire protocols, scriptable per test.

    with Upstream() as up:
        up.script("500", "500", "ok")          # then "ok" for every further request
        ... base_url=up.base_url ...          # http://127.0.0.1:<port>/v1
        up.requests                            # what it received, in order

It speaks OpenAI chat completions on ``POST /v1/chat/completions`` and Anthropic's Messages API
on ``POST /v1/messages``; any other path is a 404 (which takes no behaviour from the queue). The
answer is always "hello from upstream". A request with ``"stream": true`` is answered with
Server-Sent Events, ``Transfer-Encoding: chunked``, each event written (and so flushed) on its
own, in three parts: the opening, one content event per word ("hello", " from", " upstream"),
and the closing.

- OpenAI: opening = a chunk with ``delta: {role: assistant, content: ""}``; closing = a chunk
  with ``finish_reason``, then (when ``stream_options.include_usage``) the usage chunk
  (``choices: []``), then ``data: [DONE]``.
- Anthropic: opening = ``message_start`` (with ``usage.input_tokens``), ``content_block_start``
  and a ``ping``; content = ``content_block_delta`` (``text_delta``) events; closing =
  ``content_block_stop``, ``message_delta`` (``stop_reason``, ``usage.output_tokens``),
  ``message_stop``.

Behaviours (strings or tuples), one per request in order, from one queue shared by both
protocols; ``"ok"`` when the queue is empty:

- ``"ok"`` or ``("ok", options)``: answer. ``options`` may hold the usage (``prompt_tokens`` and
  ``completion_tokens``, or Anthropic's ``input_tokens`` and ``output_tokens``; default 10 and 5)
  and the stop (``finish_reason`` for OpenAI, default "stop"; ``stop_reason`` for Anthropic,
  default "end_turn").
- ``("slow", ms)``: sleep, then ok (before any byte of the answer, headers included).
- a status as an int or a string (``500``, ``"529"``): that status with the protocol's error
  body; ``("429", retry_after_seconds)`` adds ``Retry-After``. A 401's error message echoes
  the key the request carried (the worst case of a provider's error body).
- ``"close"``: read the request, close the connection without answering.
- ``("slow_stream", ms)``: headers at once, then sleep ``ms`` before each event (the first
  included). A non-streaming request sleeps once, then gets ok.
- ``("drop", n)``: the opening and ``n`` content events, then drop the connection (no closing,
  no terminating chunk). A non-streaming request gets half its body, then the drop.
- ``("error", n)``: the opening and ``n`` content events, then an error event (OpenAI
  ``data: {"error": ...}``; Anthropic ``event: error``, ``overloaded_error``), then the end.
- ``("malformed", n)``: the opening and ``n`` content events, then ``data: {not json``, then the
  end. A non-streaming request gets a 200 whose body is not JSON.
- ``"no_done"``: the whole stream but its terminating event (``[DONE]`` / ``message_stop``),
  then a clean end of the body.
- ``("hold", (n, event))``: the opening and ``n`` content events, then wait for the
  ``threading.Event`` before sending the rest (a test sets it once its client has seen the
  first events: proof they were passed through as they arrived). If it is not set within
  ``HOLD_LIMIT_SECONDS`` or the server stops, drop the connection.

``free_port()`` gives a port where nothing listens.
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
ANSWER = "hello from upstream"
WORDS = ["hello", " from", " upstream"]
HOLD_LIMIT_SECONDS = 10
OPENAI_PATH = "/v1/chat/completions"
ANTHROPIC_PATH = "/v1/messages"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any
    at: float  # time.monotonic() when the request arrived
    client_port: int  # the client's port: the same for requests over one kept-alive connection

    def header(self, name: str) -> str | None:
        """A header's value, whatever the case of its name (None when it was not sent)."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens (a connection to it is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tokens(options: dict[str, Any]) -> tuple[int, int]:
    prompt = options.get("prompt_tokens", options.get("input_tokens", 10))
    completion = options.get("completion_tokens", options.get("output_tokens", 5))
    return prompt, completion


def _event(data: Any, event: str | None = None) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


def _completion(model: str, usage: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "id": "chatcmpl-upstream-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "logprobs": None,
                "finish_reason": usage.get("finish_reason", "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


Frames = tuple[list[bytes], list[bytes], list[bytes]]  # opening, content, closing


class _OpenAI:
    @staticmethod
    def completion(model: str, options: dict[str, Any]) -> dict[str, Any]:
        prompt, completion = _tokens(options)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        if "finish_reason" in options:
            usage["finish_reason"] = options["finish_reason"]
        return _completion(model, usage)

    @staticmethod
    def error(status: int, message: str) -> dict[str, Any]:
        kind = "invalid_request_error" if status < 500 else "server_error"
        return {"error": {"message": message, "type": kind, "code": None}}

    @staticmethod
    def frames(model: str, body: dict[str, Any], options: dict[str, Any]) -> Frames:
        stream_options = body.get("stream_options") or {}
        include_usage = isinstance(stream_options, dict) and stream_options.get("include_usage")
        prompt, completion = _tokens(options)

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            data = {
                "id": "chatcmpl-upstream-1",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": model,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return _event(data)

        closing = [chunk({}, options.get("finish_reason", "stop"))]
        if include_usage:
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            }
            closing.append(
                _event(
                    {
                        "id": "chatcmpl-upstream-1",
                        "object": "chat.completion.chunk",
                        "created": 1_700_000_000,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        closing.append(_event("[DONE]"))
        return (
            [chunk({"role": "assistant", "content": ""})],
            [chunk({"content": word}) for word in WORDS],
            closing,
        )

    @staticmethod
    def error_event() -> bytes:
        return _event({"error": {"message": "upstream broke", "type": "server_error", "code": 500}})


ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


class _Anthropic:
    @staticmethod
    def completion(model: str, options: dict[str, Any]) -> dict[str, Any]:
        prompt, completion = _tokens(options)
        return {
            "id": "msg_upstream_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": ANSWER}],
            "stop_reason": options.get("stop_reason", "end_turn"),
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": completion},
        }

    @staticmethod
    def error(status: int, message: str) -> dict[str, Any]:
        kind = ANTHROPIC_ERRORS.get(
            status, "api_error" if status >= 500 else "invalid_request_error"
        )
        return {"type": "error", "error": {"type": kind, "message": message}}

    @staticmethod
    def frames(model: str, body: dict[str, Any], options: dict[str, Any]) -> Frames:
        prompt, completion = _tokens(options)
        message = {
            "id": "msg_upstream_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt, "output_tokens": 1},
        }
        opening = [
            _event({"type": "message_start", "message": message}, "message_start"),
            _event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            ),
            _event({"type": "ping"}, "ping"),
        ]
        content = [
            _event(
                {
                    "type": "content_block_delta",
                    "index": 0,
                    "delta": {"type": "text_delta", "text": w},
                },
                "content_block_delta",
            )
            for w in WORDS
        ]
        stop = options.get("stop_reason", "end_turn")
        closing = [
            _event({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": completion},
                },
                "message_delta",
            ),
            _event({"type": "message_stop"}, "message_stop"),
        ]
        return opening, content, closing

    @staticmethod
    def error_event() -> bytes:
        error = {"type": "overloaded_error", "message": "Overloaded"}
        return _event({"type": "error", "error": error}, "error")


WIRES: dict[str, Any] = {OPENAI_PATH: _OpenAI, ANTHROPIC_PATH: _Anthropic}
CUT_SHORT = {"drop", "error", "malformed"}


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

    def _drop(self):
        self.close_connection = True
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_RDWR)

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
        wire = WIRES.get(self.path)
        if wire is None:
            self._send_json(404, _OpenAI.error(404, "upstream says 404"))
            return
        kind, arg = up._next()
        model = body.get("model", "") if isinstance(body, dict) else ""
        streaming = isinstance(body, dict) and body.get("stream") is True
        if kind == "close":
            self._drop()
            return
        if kind == "slow":
            time.sleep(arg / 1000)
            kind, arg = "ok", None
        if kind.isdigit():
            status = int(kind)
            message = f"upstream says {status}"
            if status == 401:  # the worst case: a provider that echoes the key it was given
                key = self.headers.get("x-api-key") or self.headers.get("Authorization") or ""
                message += f": invalid key {key.removeprefix('Bearer ')!r}"
            headers = {"Retry-After": str(arg)} if kind == "429" and arg is not None else {}
            self._send_json(status, wire.error(status, message), headers)
        elif streaming:
            self._stream(wire, model, body, kind, arg)
        else:
            self._complete(wire, model, kind, arg)

    def _complete(self, wire, model: str, kind: str, arg: Any):
        options = arg if kind == "ok" and arg else {}
        if kind == "slow_stream":
            time.sleep(arg / 1000)
        elif kind == "hold" and not self.server.upstream._wait(arg[1]):
            self._drop()
            return
        elif kind == "malformed":
            data = b"{not json"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        elif kind == "drop":
            data = json.dumps(wire.completion(model, options)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._drop()
            return
        elif kind not in {"ok", "error", "no_done", "hold"}:
            raise ValueError(f"unknown behaviour {kind!r}")
        self._send_json(200, wire.completion(model, options))

    def _chunk(self, data: bytes):
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self, wire, model: str, body: dict[str, Any], kind: str, arg: Any):
        options = arg if kind == "ok" and arg else {}
        opening, content, closing = wire.frames(model, body, options)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        pause = arg / 1000 if kind == "slow_stream" else 0.0

        def send(frames: list[bytes]):
            for frame in frames:
                if pause:
                    time.sleep(pause)
                self._chunk(frame)

        if kind in CUT_SHORT or kind == "hold":
            n = arg[0] if kind == "hold" else arg
            send(opening + content[:n])
            if kind == "drop":
                self._drop()
                return
            if kind == "error":
                send([wire.error_event()])
            elif kind == "malformed":
                send([b"data: {not json\n\n"])
            elif not self.server.upstream._wait(arg[1]):
                self._drop()
                return
            else:
                send(content[n:] + closing)
        elif kind == "no_done":
            send(opening + content + closing[:-1])
        elif kind in {"ok", "slow_stream"}:
            send(opening + content + closing)
        else:
            raise ValueError(f"unknown behaviour {kind!r}")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class Upstream:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[tuple[str, Any]] = deque()
        self._stopping = threading.Event()
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
        self._stopping.set()
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

    def _wait(self, event: threading.Event) -> bool:
        """Wait for ``event``; False when it timed out or the server is stopping."""
        deadline = time.monotonic() + HOLD_LIMIT_SECONDS
        while not event.wait(0.02):
            if self._stopping.is_set() or time.monotonic() > deadline:
                return False
        return True

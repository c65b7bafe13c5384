"""A real OpenAI-speaking HTTP server on 127.0.0.1 for judges and embeddings, scriptable per test.

    with JudgeUpstream(answer='{"score": 0.9, "reason": "Polite."}') as up:
        ... base_url=up.base_url ...             # http://127.0.0.1:<port>/v1
        up.answers.extend(["not json"])          # the next chat answers, in order
        up.vectors["some text"] = [0.0, 1.0]     # the embedding of a text
        up.requests                              # (path, body, headers) received, in order

``POST /v1/chat/completions`` answers a ``chat.completion`` whose content is the next queued
answer, else ``answer``. ``POST /v1/embeddings`` answers one embedding per input text: the
vector given for it in ``vectors``, else ``default_vector``. ``statuses`` queues HTTP statuses
to answer instead (with an OpenAI error body), one per request, for either path. Any other path
is a 404.
"""

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    upstream: "JudgeUpstream"

    def handle_error(self, request, client_address):
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format, *args):
        pass

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        up = self.server.upstream
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode(errors="replace")
        with up.lock:
            up.requests.append((self.path, body, dict(self.headers.items())))
            status = up.statuses.popleft() if up.statuses else 200
        if status != 200:
            kind = "server_error" if status >= 500 else "invalid_request_error"
            self._send(status, {"error": {"message": "scripted", "type": kind, "code": None}})
            return
        if self.path == "/v1/chat/completions":
            with up.lock:
                content = up.answers.popleft() if up.answers else up.answer
            self._send(
                200,
                {
                    "id": "chatcmpl-judge-1",
                    "object": "chat.completion",
                    "created": 1_700_000_000,
                    "model": body.get("model", "") if isinstance(body, dict) else "",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 40, "completion_tokens": 12, "total_tokens": 52},
                },
            )
        elif self.path == "/v1/embeddings":
            texts = body.get("input") if isinstance(body, dict) else None
            if isinstance(texts, str):
                texts = [texts]
            texts = texts or []
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": up.vectors.get(text, up.default_vector),
                }
                for i, text in enumerate(texts)
            ]
            tokens = sum(len(str(t).split()) for t in texts)
            self._send(
                200,
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model", ""),
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                },
            )
        else:
            self._send(404, {"error": {"message": "no such path", "type": "not_found"}})


class JudgeUpstream:
    def __init__(
        self,
        *,
        answer: str = '{"score": 1, "reason": "Meets the rubric."}',
        vectors: dict[str, list[float]] | None = None,
        default_vector: list[float] | None = None,
    ) -> None:
        self.answer = answer
        self.answers: deque[str] = deque()
        self.vectors: dict[str, list[float]] = dict(vectors or {})
        self.default_vector = default_vector or [1.0, 0.0, 0.0]
        self.statuses: deque[int] = deque()
        self.requests: list[tuple[str, Any, dict]] = []
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def paths(self) -> list[str]:
        return [path for path, _, _ in self.requests]

    def __enter__(self) -> "JudgeUpstream":
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.upstream = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

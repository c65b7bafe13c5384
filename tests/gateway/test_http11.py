"""The lean HTTP/1.1 client (apps/gateway/http11.py) behind ``sse.post_json``, against tiny
asyncio servers that answer exactly the bytes a test gives them (and count connections), and
against the scriptable upstream. Every exchange test runs with httptools and with h11."""

import asyncio
import json
from collections import deque
from typing import Any

import pytest

from apps.gateway import http, http11
from apps.gateway.http import (
    UpstreamConnectionError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from apps.gateway.providers import sse

from .upstream import Upstream, free_port

SECRET = "sk-CANARY-lean-4242"
BODY = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}


def answer(
    status: int = 200, body: bytes = b'{"ok": true}', headers: dict[str, str] | None = None
) -> bytes:
    reason = {200: "OK", 401: "Unauthorized", 503: "Service Unavailable"}.get(status, "X")
    head = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in (headers or {"Content-Length": str(len(body))}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


CLOSE = "close"  # read the request, close without a byte of an answer


class Server:
    """Answers each request with the next action: bytes to write (then keep the connection
    unless they say ``Connection: close``), a list of byte pieces (written apart), CLOSE, or
    ("sleep", seconds). Counts accepted connections; keeps every request's head and body."""

    def __init__(self, *actions: Any) -> None:
        self.actions = deque(actions)
        self.accepted = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.writers: list[asyncio.StreamWriter] = []
        self.eofs = 0

    async def __aenter__(self) -> "Server":
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/v1/chat/completions"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    self.eofs += 1
                    return
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                self.requests.append((head, await reader.readexactly(length)))
                action = self.actions.popleft() if self.actions else answer()
                if action == CLOSE:
                    return
                if isinstance(action, tuple):
                    await asyncio.sleep(action[1])
                    action = answer()
                pieces = action if isinstance(action, list) else [action]
                for n, piece in enumerate(pieces):
                    if n:
                        await asyncio.sleep(0.01)  # the pieces arrive apart
                    writer.write(piece)
                    await writer.drain()
                if b"connection: close" in b"".join(pieces).lower():
                    return
        except asyncio.CancelledError:
            pass  # the test's loop is ending
        finally:
            writer.close()


@pytest.fixture(autouse=True)
def _lean_http_on(settings):
    """The lean client is opt-in (``GATEWAY_LEAN_HTTP``); these tests turn it on."""
    settings.GATEWAY_LEAN_HTTP = True


@pytest.fixture(params=["httptools", "h11"])
def parser(request, monkeypatch):
    if request.param == "h11":
        monkeypatch.setattr(http11, "httptools", None)
    return request.param


def post(url: str, timeout_seconds: float = 5, secret: str = SECRET, **kwargs: Any):
    headers = {"Accept": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return sse.post_json(
        url=url, headers=headers, body=kwargs.get("body", BODY),
        timeout_seconds=timeout_seconds, secret=secret,
    )  # fmt: skip


def run(scenario):
    async def main():
        try:
            return await scenario()
        finally:
            await http.aclose()

    return asyncio.run(main())


def test_sequential_calls_share_one_kept_alive_connection(parser):
    async def scenario():
        async with Server() as server:
            for _ in range(10):
                assert await post(server.url) == {"ok": True}
            return server

    server = run(scenario)
    assert server.accepted == 1
    assert len(server.requests) == 10


def test_the_request_is_a_json_post_with_the_adapters_headers(parser):
    async def scenario():
        async with Server() as server:
            await post(server.url)
            return server

    head, body = run(scenario).requests[0]
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /v1/chat/completions HTTP/1.1"
    fields = {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:] if x)}
    assert fields["host"] == f"127.0.0.1:{fields['host'].split(':')[1]}"
    assert fields["content-type"] == "application/json"
    assert fields["accept"] == "application/json"
    assert fields["authorization"] == f"Bearer {SECRET}"
    assert fields["user-agent"] == http11.USER_AGENT
    assert int(fields["content-length"]) == len(body)
    assert json.loads(body) == BODY  # UTF-8, as httpx encodes it


def test_a_chunked_answer_is_read_whole(parser):
    payload = json.dumps({"answer": "x" * 5000}).encode()
    chunked = [
        answer(headers={"Transfer-Encoding": "chunked"}, body=b""),
        b"%x;ext=1\r\n%s\r\n" % (100, payload[:100]),
        b"%x\r\n%s\r\n" % (len(payload) - 100, payload[100:]),
        b"0\r\n\r\n",
    ]

    async def scenario():
        async with Server(chunked, chunked) as server:
            first = await post(server.url)
            second = await post(server.url)
            return server, first, second

    server, first, second = run(scenario)
    assert first == second == {"answer": "x" * 5000}
    assert server.accepted == 1


def test_connection_close_is_honoured(parser):
    closing = answer(headers={"Content-Length": "12", "Connection": "close"})

    async def scenario():
        async with Server(closing, closing) as server:
            for _ in range(4):
                assert await post(server.url) == {"ok": True}
            return server

    server = run(scenario)
    assert server.accepted == 3  # two answers said close; the third kept its connection


def test_an_answer_read_to_the_end_of_the_connection(parser):
    undelimited = answer(headers={"Connection": "close"})

    async def scenario():
        async with Server(undelimited) as server:
            return await post(server.url)

    assert run(scenario) == {"ok": True}


def test_a_connection_the_server_closed_while_idle_is_not_used(parser):
    closing_later = answer()

    async def scenario():
        async with Server(closing_later) as server:
            await post(server.url)
            for writer in server.writers:  # the server's keep-alive timeout
                writer.close()
            await asyncio.sleep(0.05)
            assert await post(server.url) == {"ok": True}
            return server

    server = run(scenario)
    assert (server.accepted, len(server.requests)) == (2, 2)


def test_a_stale_connection_is_retried_once_transparently(parser, monkeypatch):
    """The race the idle check cannot see: the server closes the kept-alive connection as the
    request goes out. Not one byte of an answer came back, so it is sent again, once."""
    monkeypatch.setattr(http11._Connection, "usable", lambda self: True)

    async def scenario():
        async with Server() as server:
            await post(server.url)
            for writer in server.writers:
                writer.close()
            await asyncio.sleep(0.05)
            assert await post(server.url) == {"ok": True}
            return server

    server = run(scenario)
    assert (server.accepted, len(server.requests)) == (2, 2)


def test_a_server_that_closes_after_reading_is_retried_once_then_fails(parser):
    async def scenario():
        async with Server(answer(), CLOSE, CLOSE, CLOSE) as server:
            await post(server.url)
            with pytest.raises(UpstreamConnectionError) as caught:
                await post(server.url)
            return server, caught.value

    server, error = run(scenario)
    assert str(error) == "RemoteProtocolError talking to the provider."
    assert error.retryable
    # the first answer, then the reused connection and one fresh one: never a third send
    assert (server.accepted, len(server.requests)) == (2, 3)


def test_a_fresh_connection_that_closes_is_not_retried(parser):
    async def scenario():
        async with Server(CLOSE, CLOSE) as server:
            with pytest.raises(UpstreamConnectionError):
                await post(server.url)
            return server

    server = run(scenario)
    assert (server.accepted, len(server.requests)) == (1, 1)


def test_an_answer_cut_short_is_a_connection_error_never_retried(parser):
    cut = [answer()[:-4]]  # the body is 4 bytes short, then the connection closes

    async def scenario():
        async with Server(answer(), cut) as server:
            await post(server.url)
            task = asyncio.create_task(post(server.url))
            await asyncio.sleep(0.1)
            for writer in server.writers:
                writer.close()
            with pytest.raises(UpstreamConnectionError):
                await task
            return server

    server = run(scenario)
    assert len(server.requests) == 2


def test_a_refused_connection_is_a_connection_error(parser):
    async def scenario():
        with pytest.raises(UpstreamConnectionError) as caught:
            await post(f"http://127.0.0.1:{free_port()}/v1/chat/completions")
        return caught.value

    assert str(run(scenario)) == "ConnectError talking to the provider."


def test_a_slow_answer_is_a_timeout_and_its_connection_is_dropped(parser):
    async def scenario():
        async with Server(("sleep", 1.0)) as server:
            with pytest.raises(UpstreamTimeout) as caught:
                await post(server.url, timeout_seconds=0.2)
            assert http11._pool(asyncio.get_running_loop()).connections() == []
            assert await post(server.url) == {"ok": True}
            return server, caught.value

    server, error = run(scenario)
    assert str(error) == "No answer within 0.2 s."
    assert server.accepted == 2


def test_a_body_that_is_not_json_is_a_protocol_error(parser):
    async def scenario():
        async with Server(answer(body=b"{not json"), answer(body=b"[1, 2]")) as server:
            with pytest.raises(UpstreamProtocolError) as first:
                await post(server.url)
            with pytest.raises(UpstreamProtocolError) as second:
                await post(server.url)
            return str(first.value), str(second.value)

    assert run(scenario) == (
        "The provider's answer is not JSON.",
        "The provider's answer is not a JSON object.",
    )


def test_an_answer_that_is_not_http_is_a_connection_error(parser):
    async def scenario():
        async with Server(b"SMTP ready\r\n\r\n") as server:
            with pytest.raises(UpstreamConnectionError) as caught:
                await post(server.url)
            return str(caught.value)

    assert run(scenario) == "RemoteProtocolError talking to the provider."


def test_a_503_carries_its_status_and_retry_after(parser):
    body = b'{"error": "overloaded"}'
    busy = answer(503, body, {"Content-Length": str(len(body)), "Retry-After": "7"})

    async def scenario():
        async with Server(busy) as server:
            with pytest.raises(UpstreamHTTPError) as caught:
                await post(server.url)
            assert await post(server.url) == {"ok": True}  # the connection was kept
            return server, caught.value

    server, error = run(scenario)
    assert (error.status_code, error.retry_after, error.retryable) == (503, 7.0, True)
    assert error.body == body.decode()
    assert server.accepted == 1


def test_the_secret_is_redacted_from_the_error_body(parser):
    body = json.dumps({"error": f"invalid key {SECRET!r}", "pad": "y" * 3000}).encode()
    echo = answer(401, body, {"Content-Length": str(len(body))})

    async def scenario():
        async with Server(echo) as server:
            with pytest.raises(UpstreamHTTPError) as caught:
                await post(server.url)
            return caught.value

    error = run(scenario)
    assert error.status_code == 401 and not error.retryable
    assert SECRET not in error.body and "[redacted]" in error.body
    assert error.body == sse.redact(body.decode()[: sse.BODY_EXCERPT], SECRET)
    assert SECRET not in str(error) and SECRET not in repr(error.args)


def test_aclose_closes_the_idle_connections():
    async def scenario():
        async with Server() as server:
            await post(server.url)
            await http.aclose()
            await asyncio.sleep(0.05)
            return server

    assert run(scenario).eofs == 1


def test_the_scriptable_upstream_sees_one_connection():
    with Upstream() as up:
        up.script("ok", "500", "ok")

        async def scenario():
            await post(up.base_url + "/chat/completions")
            with pytest.raises(UpstreamHTTPError):
                await post(up.base_url + "/chat/completions")
            await post(up.base_url + "/chat/completions")

        run(scenario)
    assert len({r.client_port for r in up.requests}) == 1
    assert up.requests[0].header("User-Agent") == http11.USER_AGENT


def test_the_setting_off_uses_httpx(settings):
    settings.GATEWAY_LEAN_HTTP = False
    with Upstream() as up:

        async def scenario():
            return await post(up.base_url + "/chat/completions")

        assert run(scenario)["object"] == "chat.completion"
    assert up.requests[0].header("User-Agent").startswith("python-httpx/")


def test_by_default_only_the_subscribers_gateway_uses_it(settings):
    """GIVEN the default setting WHEN a call is made outside a gateway request (a Celery task,
    the playground) THEN httpx carries it; inside one, the lean client does; "1" and "0" say
    everywhere and nowhere."""
    settings.GATEWAY_LEAN_HTTP = "gateway"
    assert http11.enabled() is False
    token = http11.in_gateway.set(True)
    try:
        assert http11.enabled() is True
        settings.GATEWAY_LEAN_HTTP = "0"
        assert http11.enabled() is False
    finally:
        http11.in_gateway.reset(token)
    settings.GATEWAY_LEAN_HTTP = "1"
    assert http11.enabled() is True
    with Upstream() as up:
        settings.GATEWAY_LEAN_HTTP = "gateway"

        async def scenario():
            return await post(up.base_url + "/chat/completions")

        run(scenario)
    assert up.requests[0].header("User-Agent").startswith("python-httpx/")


def test_urls_it_does_not_take_go_to_httpx():
    assert http11.target("https://api.example.com/v1/chat/completions") is None
    assert http11.target("http://user:pw@127.0.0.1:8000/v1") is None
    assert http11.target("http://127.0.0.1:8000/v1/a b") is None
    assert http11.target("http://127.0.0.1:99999/v1") is None
    assert http11.target("http://localhost/v1/x?a=1") == http11.Target(
        "localhost", 80, "localhost", "/v1/x?a=1"
    )
    assert http11.target("http://[::1]:8080/v1").host_header == "[::1]:8080"

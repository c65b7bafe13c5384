"""The OpenAI-compatible adapter's streaming, and the shared SSE reader, against a real server."""

import asyncio
import threading
import time
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from apps.gateway import http
from apps.gateway.http import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamStreamBroken,
    UpstreamTimeout,
)
from apps.gateway.providers import openai_compatible, sse

from .upstream import OPENAI_PATH, Upstream, free_port

MESSAGES = [{"role": "user", "content": "Hello there"}]
SECRET = "sk-STREAM-canary-7777"


@pytest.fixture
def upstream():
    with Upstream() as up:
        yield up


def run(work):
    """Run ``work()`` (a coroutine function) in a fresh loop, closing the loop's client after."""

    async def main():
        try:
            return await work()
        finally:
            await http.aclose()

    return asyncio.run(main())


def stream(base_url: str, **kwargs: Any):
    kwargs.setdefault("secret", SECRET)
    kwargs.setdefault("provider_model", "gpt-test")
    kwargs.setdefault("messages", MESSAGES)
    kwargs.setdefault("parameters", {"temperature": 0})
    kwargs.setdefault("timeout_seconds", 5)
    return openai_compatible.stream(base_url=base_url, **kwargs)


async def drain(chunks) -> tuple[list[dict[str, Any]], UpstreamError | None]:
    """Every chunk received, and the error that ended the stream (None when it ended well)."""
    got: list[dict[str, Any]] = []
    try:
        async with aclosing(chunks) as iterator:
            async for chunk in iterator:
                got.append(chunk)
    except UpstreamError as exc:
        return got, exc
    return got, None


def collect(base_url: str, **kwargs: Any) -> tuple[list[dict[str, Any]], UpstreamError | None]:
    return run(lambda: drain(stream(base_url, **kwargs)))


def content(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def assert_secret_hidden(exc: BaseException) -> None:
    assert SECRET not in str(exc)
    assert SECRET not in repr(exc.args)
    assert SECRET not in getattr(exc, "body", "")


# ---- the happy path --------------------------------------------------------------------------


def test_stream_yields_the_chunks_in_order_then_the_usage_chunk(upstream):
    chunks, error = collect(upstream.base_url)
    assert error is None
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [c["choices"][0]["delta"].get("content") for c in chunks[1:4]]
    assert deltas == ["hello", " from", " upstream"]
    assert content(chunks) == "hello from upstream"
    assert chunks[4]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert len(chunks) == 6


def test_the_request_asks_for_a_stream_with_usage_whatever_the_parameters_said(upstream):
    parameters = {"temperature": 0, "stream": False, "stream_options": {"include_usage": False}}
    chunks, error = collect(upstream.base_url, parameters=parameters)
    assert error is None
    (received,) = upstream.requests
    assert received.path == OPENAI_PATH
    assert received.body["stream"] is True
    assert received.body["stream_options"] == {"include_usage": True}
    assert received.body["temperature"] == 0
    assert received.body["model"] == "gpt-test"
    assert received.body["messages"] == MESSAGES
    assert received.header("Authorization") == f"Bearer {SECRET}"
    assert received.header("Accept") == "text/event-stream"
    assert chunks[-1]["usage"]["total_tokens"] == 15


def test_the_usage_comes_from_the_upstream(upstream):
    upstream.script(("ok", {"prompt_tokens": 1000, "completion_tokens": 500}))
    chunks, _ = collect(upstream.base_url)
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "total_tokens": 1500,
    }


def test_chunks_pass_through_as_they_arrive(upstream):
    """GIVEN an upstream that sends two chunks, then waits for the test's signal
    WHEN the client reads the stream
    THEN it receives those two chunks before the upstream sends the third (nothing buffered),
    and the rest once the signal is given."""
    proceed = threading.Event()
    upstream.script(("hold", (1, proceed)))

    async def work():
        got = []
        async with aclosing(stream(upstream.base_url)) as chunks:
            async for chunk in chunks:
                got.append(chunk)
                if len(got) == 2:
                    assert not proceed.is_set()  # the upstream is still waiting to send more
                    assert content(got) == "hello"
                    proceed.set()
        return got

    got = run(work)
    assert content(got) == "hello from upstream"
    assert got[-1]["usage"]["total_tokens"] == 15


def test_the_timeout_bounds_the_silence_between_chunks_not_the_whole_stream(upstream):
    """GIVEN chunks 150 ms apart (about 1 s in all) and a 0.6 s timeout
    THEN the stream completes."""
    upstream.script(("slow_stream", 150))
    started = time.monotonic()
    chunks, error = collect(upstream.base_url, timeout_seconds=0.6)
    assert error is None
    assert time.monotonic() - started > 0.6
    assert content(chunks) == "hello from upstream"


def test_a_second_stream_works_on_the_same_client(upstream):
    async def work():
        first = await drain(stream(upstream.base_url))
        second = await drain(stream(upstream.base_url))
        return first, second

    (first, e1), (second, e2) = run(work)
    assert (e1, e2) == (None, None)
    assert content(first) == content(second) == "hello from upstream"


# ---- failures before the stream started ------------------------------------------------------


def test_a_500_before_streaming_is_a_retryable_http_error(upstream):
    upstream.script(500)
    chunks, error = collect(upstream.base_url)
    assert chunks == []
    assert isinstance(error, UpstreamHTTPError)
    assert error.status_code == 500
    assert error.retryable
    assert "upstream says 500" in error.body
    assert_secret_hidden(error)


def test_an_error_body_that_echoes_the_secret_is_redacted(upstream):
    upstream.script(401)
    _, error = collect(upstream.base_url)
    assert isinstance(error, UpstreamHTTPError)
    assert error.status_code == 401
    assert "invalid key '[redacted]'" in error.body
    assert_secret_hidden(error)


def test_a_429_carries_its_retry_after(upstream):
    upstream.script(("429", 7))
    _, error = collect(upstream.base_url)
    assert isinstance(error, UpstreamHTTPError)
    assert (error.status_code, error.retry_after, error.retryable) == (429, 7.0, True)


def test_a_400_is_not_retryable(upstream):
    upstream.script(400)
    _, error = collect(upstream.base_url)
    assert isinstance(error, UpstreamHTTPError)
    assert (error.status_code, error.retryable) == (400, False)


def test_a_refused_connection_is_a_connection_error():
    _, error = collect(f"http://127.0.0.1:{free_port()}/v1")
    assert isinstance(error, UpstreamConnectionError)
    assert error.retryable
    assert_secret_hidden(error)


def test_a_connection_closed_without_an_answer_is_a_connection_error(upstream):
    upstream.script("close")
    _, error = collect(upstream.base_url)
    assert isinstance(error, UpstreamConnectionError)


def test_no_headers_within_the_timeout_is_a_timeout(upstream):
    upstream.script(("slow", 1000))
    chunks, error = collect(upstream.base_url, timeout_seconds=0.2)
    assert chunks == []
    assert isinstance(error, UpstreamTimeout)
    assert error.retryable


def test_no_first_chunk_within_the_timeout_is_a_timeout(upstream):
    """GIVEN an upstream that sends its headers at once, then nothing for 1 s
    THEN a 0.2 s timeout is an UpstreamTimeout (nothing was yielded: a retry is safe)."""
    upstream.script(("slow_stream", 1000))
    chunks, error = collect(upstream.base_url, timeout_seconds=0.2)
    assert chunks == []
    assert isinstance(error, UpstreamTimeout)


# ---- failures once the stream started --------------------------------------------------------


def test_a_drop_mid_stream_is_a_broken_stream_after_the_first_chunks(upstream):
    upstream.script(("drop", 1))
    chunks, error = collect(upstream.base_url)
    assert content(chunks) == "hello"
    assert len(chunks) == 2
    assert isinstance(error, UpstreamStreamBroken)
    assert not error.retryable
    assert error.error_class == "UpstreamStreamBroken"
    assert_secret_hidden(error)


def test_a_read_timeout_mid_stream_is_a_broken_stream(upstream):
    never = threading.Event()
    upstream.script(("hold", (2, never)))
    started = time.monotonic()
    chunks, error = collect(upstream.base_url, timeout_seconds=0.3)
    assert time.monotonic() - started < 3
    assert content(chunks) == "hello from"
    assert isinstance(error, UpstreamStreamBroken)
    assert "0.3 s" in str(error)


def test_an_end_without_done_is_a_broken_stream(upstream):
    upstream.script("no_done")
    chunks, error = collect(upstream.base_url)
    assert chunks[-1]["usage"]["total_tokens"] == 15  # everything but [DONE] arrived
    assert isinstance(error, UpstreamStreamBroken)
    assert "[DONE]" in str(error)


def test_a_malformed_event_is_a_broken_stream(upstream):
    upstream.script(("malformed", 2))
    chunks, error = collect(upstream.base_url)
    assert content(chunks) == "hello from"
    assert isinstance(error, UpstreamStreamBroken)


def test_an_error_event_mid_stream_is_a_broken_stream(upstream):
    upstream.script(("error", 1))
    chunks, error = collect(upstream.base_url)
    assert content(chunks) == "hello"
    assert isinstance(error, UpstreamStreamBroken)
    assert "server_error" in str(error)


def test_stopping_early_closes_the_stream(upstream):
    async def work():
        async with aclosing(stream(upstream.base_url)) as chunks:
            async for _chunk in chunks:
                break
        return await drain(stream(upstream.base_url))

    chunks, error = run(work)
    assert error is None
    assert content(chunks) == "hello from upstream"


# ---- the non-streaming call still does what it did -------------------------------------------


def test_complete_sends_no_stream_options(upstream):
    async def work():
        return await openai_compatible.complete(
            base_url=upstream.base_url,
            secret=SECRET,
            provider_model="gpt-test",
            messages=MESSAGES,
            parameters={"stream": True, "stream_options": {"include_usage": True}},
            timeout_seconds=5,
        )

    answer = run(work)
    assert answer["choices"][0]["message"]["content"] == "hello from upstream"
    body = upstream.requests[0].body
    assert body["stream"] is False
    assert "stream_options" not in body


def test_complete_maps_a_body_that_is_not_json_to_a_protocol_error(upstream):
    upstream.script("malformed")

    async def work():
        return await openai_compatible.complete(
            base_url=upstream.base_url,
            secret=SECRET,
            provider_model="gpt-test",
            messages=MESSAGES,
            parameters={},
            timeout_seconds=5,
        )

    with pytest.raises(UpstreamProtocolError):
        run(work)


# ---- the SSE reader --------------------------------------------------------------------------


def test_sse_lines_end_in_crlf_lf_or_cr_even_split_across_chunks():
    events = sse.decode([b"data: a\r", b"\n\r\ndata: b\rdata: c\r", b"\r", b"\n", b"data: d\n\n"])
    assert [e.data for e in events] == ["a", "b\nc", "d"]


def test_sse_fields_comments_and_a_pending_event_at_the_end():
    body = (
        b"\xef\xbb\xbf: keep-alive\nevent: message_start\nid: 7\nretry: 10\ndata:{}\n\ndata: [DONE]"
    )
    first, last = sse.decode([body])
    assert (first.event, first.id, first.data) == ("message_start", "7", "{}")
    assert (last.event, last.data) == ("message", "[DONE]")


def test_sse_keeps_unicode_line_separators_and_multibyte_characters_whole():
    """JSON may carry U+2028 unescaped; str.splitlines (and so httpx's aiter_lines) would split
    the event there. A multi-byte character split across two chunks stays one character."""
    text = 'data: {"c": "a\u2028b \u00e9"}\n\n'.encode()
    cut = text.index(b"\xc3") + 1  # inside the two bytes of "é"
    (event,) = sse.decode([text[:cut], text[cut:]])
    assert event.data == '{"c": "a\u2028b \u00e9"}'


def test_sse_refuses_an_endless_line():
    decoder = sse.LineDecoder()
    with pytest.raises(sse.SSEError):
        for _ in range(20):
            decoder.feed(b"x" * (1024 * 1024))


def test_an_error_event_before_the_first_chunk_keeps_its_status():
    """An error the provider reports before anything was yielded is still safe to retry: it
    maps like the status it stands for; after a chunk, it is a broken stream."""
    events = sse.EventStream(httpx.Response(200, content=b""), timeout_seconds=1, secret=SECRET)
    payload = {"type": "error", "error": {"type": "overloaded_error", "message": SECRET}}
    error = events.reported(529, "overloaded_error", payload)
    assert isinstance(error, UpstreamHTTPError)
    assert (error.status_code, error.retryable) == (529, True)
    assert_secret_hidden(error)
    assert isinstance(events.reported(None, "weird", payload), UpstreamProtocolError)
    events.started = True
    assert isinstance(events.reported(529, "overloaded_error", payload), UpstreamStreamBroken)

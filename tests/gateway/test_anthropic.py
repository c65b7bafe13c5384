"""The Anthropic adapter (Messages API in OpenAI's chat shape) against a real server."""

import threading
import time
from contextlib import aclosing
from typing import Any

import pytest

from apps.core.exceptions import ApplicationError
from apps.gateway.http import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamHTTPError,
    UpstreamStreamBroken,
    UpstreamTimeout,
)
from apps.gateway.providers import anthropic

from .test_adapters_streaming import content, drain, run
from .upstream import ANTHROPIC_PATH, Upstream, free_port

SECRET = "sk-ant-CANARY-31337"
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "developer", "content": [{"type": "text", "text": "Answer in English."}]},
    {"role": "user", "content": "Hi"},
    {"role": "user", "content": [{"type": "text", "text": "there"}]},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "Bye"},
]


@pytest.fixture
def upstream():
    with Upstream() as up:
        yield up


def _kwargs(base_url: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    kwargs.setdefault("secret", SECRET)
    kwargs.setdefault("provider_model", "claude-test")
    kwargs.setdefault("messages", MESSAGES)
    kwargs.setdefault("parameters", {})
    kwargs.setdefault("timeout_seconds", 5)
    return {"base_url": base_url, **kwargs}


def complete(base_url: str, **kwargs: Any) -> dict[str, Any]:
    async def work():
        return await anthropic.complete(**_kwargs(base_url, kwargs))

    return run(work)


def complete_error(base_url: str, **kwargs: Any) -> UpstreamError:
    with pytest.raises(UpstreamError) as caught:
        complete(base_url, **kwargs)
    return caught.value


def stream(base_url: str, **kwargs: Any) -> tuple[list[dict[str, Any]], UpstreamError | None]:
    return run(lambda: drain(anthropic.stream(**_kwargs(base_url, kwargs))))


def assert_secret_hidden(exc: BaseException) -> None:
    assert SECRET not in str(exc)
    assert SECRET not in repr(exc)
    assert SECRET not in repr(exc.args)
    assert SECRET not in getattr(exc, "body", "")


# ---- the request -----------------------------------------------------------------------------


def test_the_request_is_mapped_to_the_messages_api(upstream):
    """GIVEN an OpenAI chat request with system and developer messages, two user messages in a
    row, a stop string and parameters Anthropic does not know
    THEN the Messages request has them joined, merged, mapped or left out, and the headers."""
    parameters = {
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": "END",
        "frequency_penalty": 1,
        "seed": 3,
        "user": "u-1",
        "stream": True,
    }
    complete(upstream.base_url, parameters=parameters)
    (received,) = upstream.requests
    assert received.path == ANTHROPIC_PATH
    assert received.body == {
        "model": "claude-test",
        "max_tokens": 1024,
        "system": "Be brief.\n\nAnswer in English.",
        "messages": [
            {
                "role": "user",
                "content": [{"type": "text", "text": "Hi"}, {"type": "text", "text": "there"}],
            },
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
        ],
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END"],
    }
    assert received.header("x-api-key") == SECRET
    assert received.header("anthropic-version") == "2023-06-01"
    assert received.header("content-type") == "application/json"
    assert received.header("authorization") is None


def test_max_tokens_and_a_list_of_stops_map_too():
    body = anthropic.request_body(
        "claude-test",
        [{"role": "user", "content": "Hi"}],
        {"max_completion_tokens": 77, "stop": ["a", "b"]},
    )
    assert body["max_tokens"] == 77
    assert body["stop_sequences"] == ["a", "b"]
    assert "system" not in body
    assert "stream" not in body
    body = anthropic.request_body("m", [{"role": "user", "content": "Hi"}], {"max_tokens": 5})
    assert body["max_tokens"] == 5
    assert anthropic.request_body("m", [], {}, stream=True)["stream"] is True


@pytest.mark.parametrize(
    "message",
    [
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
    ],
)
def test_what_cannot_be_mapped_is_refused_before_any_call(upstream, message):
    with pytest.raises(ApplicationError) as caught:
        complete(upstream.base_url, messages=[{"role": "user", "content": "Hi"}, message])
    assert caught.value.status == 400
    assert upstream.requests == []


# ---- the response ----------------------------------------------------------------------------


def test_the_response_is_mapped_to_a_chat_completion(upstream):
    upstream.script(("ok", {"input_tokens": 12, "output_tokens": 3}))
    before = int(time.time())
    answer = complete(upstream.base_url)
    assert answer["object"] == "chat.completion"
    assert answer["id"] == "msg_upstream_1"
    assert answer["model"] == "claude-test"
    assert isinstance(answer["created"], int)
    assert before <= answer["created"] <= time.time() + 1
    (choice,) = answer["choices"]
    assert choice["message"] == {"role": "assistant", "content": "hello from upstream"}
    assert choice["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
    ],
)
def test_the_stop_reason_maps_to_a_finish_reason(upstream, stop_reason, finish_reason):
    upstream.script(("ok", {"stop_reason": stop_reason}), ("ok", {"stop_reason": stop_reason}))
    assert complete(upstream.base_url)["choices"][0]["finish_reason"] == finish_reason
    chunks, error = stream(upstream.base_url)
    assert error is None
    assert chunks[-2]["choices"][0]["finish_reason"] == finish_reason


# ---- the stream ------------------------------------------------------------------------------


def test_the_stream_is_mapped_to_chat_completion_chunks(upstream):
    upstream.script(("ok", {"input_tokens": 21, "output_tokens": 4}))
    chunks, error = stream(upstream.base_url, parameters={"max_tokens": 50})
    assert error is None
    assert upstream.requests[0].body["stream"] is True
    assert upstream.requests[0].body["max_tokens"] == 50
    assert upstream.requests[0].header("accept") == "text/event-stream"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert {c["id"] for c in chunks} == {"msg_upstream_1"}
    assert {c["model"] for c in chunks} == {"claude-test"}
    role, *texts, finish, usage = chunks
    assert role["choices"][0]["delta"] == {"role": "assistant"}
    assert [t["choices"][0]["delta"] for t in texts] == [
        {"content": "hello"},
        {"content": " from"},
        {"content": " upstream"},
    ]
    assert all(t["choices"][0]["finish_reason"] is None for t in texts)
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25}


def test_stream_chunks_pass_through_as_they_arrive(upstream):
    """GIVEN an upstream that sends the opening and one text delta, then waits
    THEN the client has the role chunk and "hello" before the upstream sends more."""
    proceed = threading.Event()
    upstream.script(("hold", (1, proceed)))

    async def work():
        got = []
        async with aclosing(anthropic.stream(**_kwargs(upstream.base_url, {}))) as chunks:
            async for chunk in chunks:
                got.append(chunk)
                if len(got) == 2:
                    assert not proceed.is_set()
                    proceed.set()
        return got

    got = run(work)
    assert content(got) == "hello from upstream"


@pytest.mark.parametrize("behaviour", [("error", 1), ("drop", 1), "no_done", ("malformed", 1)])
def test_a_stream_that_breaks_after_the_first_chunks_is_a_broken_stream(upstream, behaviour):
    upstream.script(behaviour)
    chunks, error = stream(upstream.base_url)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert content(chunks) == ("hello from upstream" if behaviour == "no_done" else "hello")
    assert isinstance(error, UpstreamStreamBroken)
    assert not error.retryable
    assert_secret_hidden(error)


def test_an_error_event_names_its_type(upstream):
    upstream.script(("error", 0))
    _, error = stream(upstream.base_url)
    assert isinstance(error, UpstreamStreamBroken)
    assert "overloaded_error" in str(error)


def test_a_read_timeout_mid_stream_is_a_broken_stream(upstream):
    upstream.script(("hold", (1, threading.Event())))
    chunks, error = stream(upstream.base_url, timeout_seconds=0.3)
    assert content(chunks) == "hello"
    assert isinstance(error, UpstreamStreamBroken)


# ---- errors ----------------------------------------------------------------------------------


def test_a_529_is_a_retryable_http_error(upstream):
    upstream.script(529, 529)
    error = complete_error(upstream.base_url)
    assert isinstance(error, UpstreamHTTPError)
    assert (error.status_code, error.retryable) == (529, True)
    assert "overloaded_error" in error.body
    chunks, error = stream(upstream.base_url)
    assert chunks == []
    assert isinstance(error, UpstreamHTTPError)
    assert (error.status_code, error.retryable) == (529, True)


def test_a_429_carries_its_retry_after(upstream):
    upstream.script(("429", 3), ("429", 3))
    error = complete_error(upstream.base_url)
    assert isinstance(error, UpstreamHTTPError)
    assert (error.status_code, error.retry_after) == (429, 3.0)
    _, error = stream(upstream.base_url)
    assert isinstance(error, UpstreamHTTPError)
    assert (error.status_code, error.retry_after) == (429, 3.0)


def test_a_400_is_not_retryable(upstream):
    upstream.script(400)
    error = complete_error(upstream.base_url)
    assert isinstance(error, UpstreamHTTPError)
    assert (error.status_code, error.retryable) == (400, False)


def test_transport_failures_are_typed(upstream):
    upstream.script("close", ("slow", 1000), ("drop", 0), "close", ("slow", 1000))
    assert isinstance(complete_error(upstream.base_url), UpstreamConnectionError)
    assert isinstance(complete_error(upstream.base_url, timeout_seconds=0.2), UpstreamTimeout)
    assert isinstance(complete_error(upstream.base_url), UpstreamConnectionError)
    _, error = stream(upstream.base_url)
    assert isinstance(error, UpstreamConnectionError)
    _, error = stream(upstream.base_url, timeout_seconds=0.2)
    assert isinstance(error, UpstreamTimeout)
    refused = f"http://127.0.0.1:{free_port()}/v1"
    assert isinstance(complete_error(refused), UpstreamConnectionError)
    _, error = stream(refused)
    assert isinstance(error, UpstreamConnectionError)


def test_the_secret_appears_in_no_error(upstream):
    """GIVEN every kind of failure, including a 401 whose body echoes the key it was given
    THEN no exception's message, args or body carries the secret."""
    both = [401, 500, 529, ("429", 1), "close", ("drop", 1)]
    stream_only = [("error", 1), "no_done", ("malformed", 1)]
    errors: list[UpstreamError | None] = []
    for behaviour in both:
        upstream.script(behaviour, behaviour)
        errors.append(complete_error(upstream.base_url))
        errors.append(stream(upstream.base_url)[1])
    for behaviour in stream_only:
        upstream.script(behaviour)
        errors.append(stream(upstream.base_url)[1])
    refused = f"http://127.0.0.1:{free_port()}/v1"
    errors += [complete_error(refused), stream(refused)[1]]
    assert all(isinstance(error, UpstreamError) for error in errors)
    for error in errors:
        assert_secret_hidden(error)
    unauthorized = [e for e in errors if getattr(e, "status_code", None) == 401]
    assert len(unauthorized) == 2
    assert all("[redacted]" in e.body for e in unauthorized)

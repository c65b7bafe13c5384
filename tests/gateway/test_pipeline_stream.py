"""Streaming through the pipeline, and the Anthropic and built-in providers behind it.

Real servers on 127.0.0.1 (tests/gateway/upstream.py) speak OpenAI's and Anthropic's streaming
protocols; chunks pass through as they arrive, and one ProviderCall is written when the stream
ends or breaks.
"""

import time

import pytest
from asgiref.sync import async_to_sync

from apps.gateway import pipeline
from apps.gateway.models import ProviderCall
from apps.gateway.pipeline import (
    UpstreamFailed,
    provider_target,
    run_chat_sync,
    stream_chat,
)

from .factories import admin, price, provider
from .test_pipeline_chain import World, backup, primary  # noqa: F401 (fixtures)
from .upstream import Upstream

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(autouse=True)
def _fast_backoff(settings):
    settings.GATEWAY_BACKOFF_BASE_SECONDS = 0.01
    settings.GATEWAY_BACKOFF_CAP_SECONDS = 0.05


def consume(target, *, stop_after: int | None = None, **kwargs):
    """Read a stream to its end (or ``stop_after`` chunks, then close it); returns
    (stream, chunks, arrival times, the error raised or None)."""
    kwargs.setdefault("messages", MESSAGES)

    async def go():
        stream = stream_chat(target, **kwargs)
        chunks, times, error = [], [], None
        try:
            async for chunk in stream:
                chunks.append(chunk)
                times.append(time.monotonic())
                if stop_after is not None and len(chunks) >= stop_after:
                    await stream.aclose()
                    break
        except UpstreamFailed as exc:
            error = exc
        finally:
            await pipeline.aclose()
        return stream, chunks, times, error

    return async_to_sync(go)()


def text(chunks) -> str:
    return "".join(
        c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices")
    )


def direct(prov, model="gpt-test", retries=1, timeout=3):
    return provider_target(
        provider=prov, provider_model=model, timeout_seconds=timeout, max_retries=retries
    )


@pytest.fixture
def up():
    with Upstream() as server:
        yield server


def test_an_openai_stream_passes_through_and_is_recorded_when_it_ends(up):
    root = admin()
    prov = provider(root, base_url=up.base_url)
    price(root, prov, model="gpt-test", inp="1000", out="2000")
    stream, chunks, _, error = consume(direct(prov))
    assert error is None
    assert text(chunks) == "hello from upstream"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 10
    sent = up.requests[0].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    call = ProviderCall.objects.get()
    assert call.pk == stream.result.call_id
    assert (call.outcome, call.streamed, call.tokens_in, call.tokens_out) == ("ok", True, 10, 5)
    assert str(call.cost) == "0.02000000"  # 10 x 1000/M + 5 x 2000/M
    assert call.ttft_ms is not None and call.ttft_ms <= call.latency_ms


def test_chunks_arrive_as_the_upstream_sends_them(up):
    """GIVEN an upstream that waits 150 ms before each event
    THEN the consumer has the first chunk long before the last one: nothing is buffered."""
    prov = provider(base_url=up.base_url)
    up.script(("slow_stream", 150))
    _, chunks, times, error = consume(direct(prov))
    assert error is None
    assert len(chunks) >= 5
    assert times[-1] - times[0] >= 0.5
    call = ProviderCall.objects.get()
    assert call.ttft_ms < call.latency_ms - 300


def test_a_failure_before_the_first_chunk_is_retried(up):
    prov = provider(base_url=up.base_url)
    up.script(500, "ok")
    stream, chunks, _, error = consume(direct(prov))
    assert error is None
    assert text(chunks) == "hello from upstream"
    assert stream.result.attempts == 2
    assert ProviderCall.objects.get().attempts == 2


def test_a_stream_broken_midway_is_recorded_as_failed_and_not_retried(up):
    """GIVEN an upstream that sends one word, then drops the connection
    THEN the consumer got the chunks sent before the break, then UpstreamFailed; the call is
         recorded as an error (UpstreamStreamBroken) after one attempt: a stream that began is
         never retried (the consumer already has part of it)."""
    prov = provider(base_url=up.base_url)
    up.script(("drop", 1))
    stream, chunks, _, error = consume(direct(prov, retries=3))
    assert isinstance(error, UpstreamFailed)
    assert text(chunks) == "hello"
    assert len(up.requests) == 1
    call = ProviderCall.objects.get()
    assert (call.outcome, call.error_class, call.attempts) == ("error", "UpstreamStreamBroken", 1)
    assert call.streamed
    assert stream.result.outcome == "error"


def test_a_consumer_that_stops_reading_is_recorded(up):
    prov = provider(base_url=up.base_url)
    up.script(("slow_stream", 50))
    _, chunks, _, error = consume(direct(prov), stop_after=2)
    assert error is None and len(chunks) == 2
    call = ProviderCall.objects.get()
    assert (call.outcome, call.error_class, call.streamed) == ("error", "ClientClosed", True)


def test_a_stream_falls_back_before_it_begins(primary, backup):  # noqa: F811
    world = World(primary, backup)
    rel = world.release(max_retries=0)
    primary.script(503)
    from apps.gateway.pipeline import resolve_target

    stream, chunks, _, error = consume(
        resolve_target(release=rel), messages=None, variables={"q": "hi"}
    )
    assert error is None
    assert text(chunks) == "hello from upstream"
    assert stream.result.fallback_index == 1
    call = ProviderCall.objects.get()
    assert (call.fallback_index, call.provider, call.streamed) == (1, world.p2, True)


def test_a_streamed_answer_is_cached_and_a_hit_is_streamed_from_the_cache(primary, backup):  # noqa: F811
    world = World(primary, backup)
    rel = world.release(cache={"mode": "exact", "ttl_seconds": 60})
    from apps.gateway.pipeline import resolve_target

    target = resolve_target(release=rel)
    _, first, _, _ = consume(target, messages=None, variables={"q": "hi"})
    _, second, _, _ = consume(target, messages=None, variables={"q": "hi"})
    assert len(primary.requests) == 1
    assert text(second) == text(first) == "hello from upstream"
    assert second[-1]["usage"]["completion_tokens"] == 5
    hits = [c.cache_hit for c in ProviderCall.objects.order_by("created_at")]
    assert hits == [False, True]
    # and a non-streamed request with the same key is a hit too
    assert run_chat_sync(target, variables={"q": "hi"}).cache_hit


def test_anthropic_through_the_pipeline_non_streaming_and_streaming(up):
    canary = "sk-ant-CANARY-777"
    root = admin()
    prov = provider(root, kind="anthropic", base_url=up.base_url, secret=canary)
    price(root, prov, model="claude-test", inp="3", out="15")
    target = direct(prov, model="claude-test")
    result = run_chat_sync(target, messages=[{"role": "system", "content": "Be brief."}, *MESSAGES])
    assert result.output == "hello from upstream"
    assert (result.tokens_in, result.tokens_out) == (10, 5)
    sent = up.requests[0]
    assert sent.path == "/v1/messages"
    assert sent.headers.get("x-api-key") == canary
    assert sent.body["system"] == "Be brief."
    assert sent.body["model"] == "claude-test"

    _stream, chunks, _, error = consume(target)
    assert error is None
    assert text(chunks) == "hello from upstream"
    assert chunks[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    calls = ProviderCall.objects.order_by("created_at")
    assert [(c.outcome, c.streamed) for c in calls] == [("ok", False), ("ok", True)]
    assert str(calls[1].cost) == "0.00010500"  # 10 x 3/M + 5 x 15/M
    assert all(canary not in repr(vars(c)) for c in calls)


def test_anthropic_stream_broken_midway_is_recorded(up):
    prov = provider(kind="anthropic", base_url=up.base_url)
    up.script(("drop", 2))
    _, chunks, _, error = consume(direct(prov))
    assert isinstance(error, UpstreamFailed)
    assert text(chunks) == "hello from"
    assert ProviderCall.objects.get().error_class == "UpstreamStreamBroken"


def test_anthropic_429_honours_retry_after_then_streams(up):
    prov = provider(kind="anthropic", base_url=up.base_url)
    up.script(("429", 1), "ok")
    stream, _chunks, _, error = consume(direct(prov))
    assert error is None
    first, second = up.requests
    assert second.at - first.at >= 1.0
    assert stream.result.attempts == 2


def test_the_builtin_provider_streams_deterministically():
    prov = provider(kind="builtin")
    _, one, _, _ = consume(direct(prov, model="echo"))
    _, two, _, _ = consume(direct(prov, model="echo"))
    assert one == two
    assert text(one) == "[builtin] Hello there"
    assert one[-1]["usage"]["completion_tokens"] == 3


def test_the_builtin_failure_rate_makes_calls_fail_and_be_retried():
    prov = provider(kind="builtin", config={"failure_rate": 1.0})
    with pytest.raises(UpstreamFailed) as caught:
        run_chat_sync(direct(prov, model="echo", retries=2), messages=MESSAGES)
    assert caught.value.result.attempts == 3
    assert caught.value.result.status_code == 503

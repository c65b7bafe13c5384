"""The OpenAI-compatible adapter: OpenAI, vLLM, Ollama, llama.cpp server, most hosted APIs.

``complete`` posts one chat-completions request to ``{base_url}/chat/completions`` through the
shared pool (``gateway.http``) and returns the parsed JSON, or raises one of the typed
``Upstream*`` errors. ``stream`` posts the same request with ``stream: true`` (and
``stream_options: {"include_usage": true}``, whatever the parameters said) and yields each
``chat.completion.chunk`` as it arrives, the last one carrying the usage (``choices: []``); it
ends at ``data: [DONE]``. Both make exactly one attempt; retries are the pipeline's job. How
failures map to errors (``UpstreamStreamBroken`` once a chunk was yielded) is in ``sse``.

The secret goes only into the ``Authorization`` header, which is never logged nor put in an
error. A caller that stops reading a stream early closes it (``contextlib.aclosing``), which
closes its connection.
"""

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from ..http import (
    UpstreamConnectionError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamStreamBroken,
    UpstreamTimeout,
)
from . import sse
from .sse import BODY_EXCERPT, parse_retry_after

__all__ = [
    "BODY_EXCERPT",
    "UpstreamConnectionError",
    "UpstreamHTTPError",
    "UpstreamProtocolError",
    "UpstreamStreamBroken",
    "UpstreamTimeout",
    "complete",
    "parse_retry_after",
    "stream",
]

DONE = "[DONE]"


def request_body(
    provider_model: str,
    messages: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    *,
    stream: bool = False,
) -> dict[str, Any]:
    body = {
        key: value for key, value in parameters.items() if key not in {"stream", "stream_options"}
    }
    body["model"] = provider_model
    body["messages"] = [dict(message) for message in messages]
    body["stream"] = stream
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def _url(base_url: str) -> str:
    return base_url.rstrip("/") + "/chat/completions"


def _headers(secret: str, accept: str) -> dict[str, str]:
    headers = {"Accept": accept}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return headers


async def complete(
    *,
    base_url: str,
    secret: str,
    provider_model: str,
    messages: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    timeout_seconds: float,
) -> dict[str, Any]:
    """One ``chat.completion`` (the provider's JSON object)."""
    return await sse.post_json(
        url=_url(base_url),
        headers=_headers(secret, "application/json"),
        body=request_body(provider_model, messages, parameters),
        timeout_seconds=timeout_seconds,
        secret=secret,
    )


def _error_status(chunk: Mapping[str, Any]) -> tuple[int | None, Any]:
    """The HTTP status (vLLM and others put it in ``code``) and type of an error event."""
    error = chunk.get("error")
    if not isinstance(error, Mapping):
        return None, None
    code = error.get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) else None
    return status, error.get("type")


async def stream(
    *,
    base_url: str,
    secret: str,
    provider_model: str,
    messages: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    timeout_seconds: float,
) -> AsyncIterator[dict[str, Any]]:
    """The ``chat.completion.chunk`` dicts of one streamed answer, each as it arrives.

    ``timeout_seconds`` bounds each phase (connect, write, pool, and every read: the longest
    silence between two chunks), not the whole stream.
    """
    async with sse.open_stream(
        url=_url(base_url),
        headers=_headers(secret, "text/event-stream"),
        body=request_body(provider_model, messages, parameters, stream=True),
        timeout_seconds=timeout_seconds,
        secret=secret,
    ) as events:
        async for event in events:
            if not event.data.strip():
                continue
            if event.data.strip() == DONE:
                return
            chunk = events.json(event)
            if event.event == "error" or ("error" in chunk and "choices" not in chunk):
                status, kind = _error_status(chunk)
                raise events.reported(status, kind, chunk)
            events.started = True
            yield chunk
        raise events.ended("data: [DONE]")

"""The Anthropic adapter: the Messages API, spoken in OpenAI's chat shape.

``complete`` and ``stream`` take the same keyword arguments as the OpenAI-compatible adapter's
and answer the same shapes (a ``chat.completion`` dict; ``chat.completion.chunk`` dicts). Both
POST ``{base_url}/messages`` (``base_url`` like ``https://api.anthropic.com/v1``) with the
secret in ``x-api-key`` (never in an error) and ``anthropic-version: 2023-06-01``, through the
shared pool, in exactly one attempt; failures map to the same ``Upstream*`` errors (``sse``).
Anthropic's 529 (overloaded) is a 5xx, hence retryable.

The request: system and developer messages are joined (blank line between) into ``system``;
user and assistant messages go to ``messages``, consecutive ones of the same role merged;
content is a string or OpenAI text parts. ``max_tokens`` (required by Anthropic) comes from
``max_tokens`` or ``max_completion_tokens`` (default 1024); ``temperature`` and ``top_p`` pass
through, ``stop`` becomes ``stop_sequences``; no other parameter is passed. What cannot be
mapped (tool messages, tool calls, non-text parts) is refused before any call, with a 400
``ApplicationError``.

The stream: ``message_start`` → a chunk with ``delta: {role: assistant}``; each ``text_delta``
→ a chunk with ``delta: {content}``; ``message_delta`` → a chunk with the ``finish_reason``;
``message_stop`` → a last chunk with ``choices: []`` and the usage (input tokens from
``message_start``, output tokens from ``message_delta``), and the stream ends. ``ping`` and
event types this adapter does not know are skipped; an ``error`` event, or the end of the body
before ``message_stop``, is an ``UpstreamStreamBroken`` once a chunk was yielded.
"""

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from apps.core.exceptions import ApplicationError

from ..http import UpstreamProtocolError
from . import sse

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}

# Anthropic's error types (in an ``error`` event) and the status they come with otherwise.
ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

SYSTEM_ROLES = {"system", "developer"}
CHAT_ROLES = {"user", "assistant"}


def _unsupported(message: str) -> ApplicationError:
    return ApplicationError("unsupported", f"The Anthropic adapter cannot send {message}.")


def _blocks(content: Any) -> list[dict[str, Any]]:
    """A message's content as Anthropic text blocks (a string, or OpenAI text parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, Sequence):
        blocks = []
        for part in content:
            if isinstance(part, str):
                blocks.append({"type": "text", "text": part})
            elif isinstance(part, Mapping) and part.get("type") == "text":
                blocks.append({"type": "text", "text": str(part.get("text", ""))})
            else:
                kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
                raise _unsupported(f"a {kind!r} content part (only text)")
        return blocks
    raise _unsupported(f"message content of type {type(content).__name__}")


def _text(blocks: list[dict[str, Any]]) -> str:
    return "\n".join(block["text"] for block in blocks)


def _content(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A plain string for one block (the common case), else the list; empty text dropped."""
    kept = [block for block in blocks if block["text"]]
    if len(kept) <= 1:
        return kept[0]["text"] if kept else ""
    return kept


def request_body(
    provider_model: str,
    messages: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    *,
    stream: bool = False,
) -> dict[str, Any]:
    """The Messages API request for an OpenAI chat request."""
    system: list[str] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for message in messages:
        role = message.get("role")
        if message.get("tool_calls") or message.get("function_call"):
            raise _unsupported("tool calls")
        if role in SYSTEM_ROLES:
            if text := _text(_blocks(message.get("content"))):
                system.append(text)
        elif role in CHAT_ROLES:
            blocks = _blocks(message.get("content"))
            if turns and turns[-1][0] == role:
                turns[-1][1].extend(blocks)
            else:
                turns.append((str(role), blocks))
        else:
            raise _unsupported(f"{role!r} messages")

    max_tokens = parameters.get("max_tokens")
    if max_tokens is None:
        max_tokens = parameters.get("max_completion_tokens")
    body: dict[str, Any] = {
        "model": provider_model,
        "max_tokens": DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        "messages": [{"role": role, "content": _content(blocks)} for role, blocks in turns],
    }
    if system:
        body["system"] = "\n\n".join(system)
    for name in ("temperature", "top_p"):
        if parameters.get(name) is not None:
            body[name] = parameters[name]
    stop = parameters.get("stop")
    if isinstance(stop, str):
        body["stop_sequences"] = [stop]
    elif isinstance(stop, Sequence) and stop:
        body["stop_sequences"] = [str(item) for item in stop]
    if stream:
        body["stream"] = True
    return body


def _url(base_url: str) -> str:
    return base_url.rstrip("/") + "/messages"


def _headers(secret: str, accept: str) -> dict[str, str]:
    headers = {
        "Accept": accept,
        "Content-Type": "application/json",
        "anthropic-version": API_VERSION,
    }
    if secret:
        headers["x-api-key"] = secret
    return headers


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def finish_reason(stop_reason: Any) -> str | None:
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def to_completion(data: Mapping[str, Any], provider_model: str) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` for a Messages API response."""
    content = data.get("content")
    if not isinstance(content, list):
        raise UpstreamProtocolError("The provider's answer is not an Anthropic message.")
    text = "".join(
        str(block.get("text", ""))
        for block in content
        if isinstance(block, Mapping) and block.get("type") == "text"
    )
    usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
    return {
        "id": str(data.get("id") or ""),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(data.get("model") or provider_model),
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason(data.get("stop_reason")) or "stop",
            }
        ],
        "usage": _usage(_count(usage.get("input_tokens")), _count(usage.get("output_tokens"))),
    }


async def complete(
    *,
    base_url: str,
    secret: str,
    provider_model: str,
    messages: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    timeout_seconds: float,
) -> dict[str, Any]:
    """One Messages API call, answered as an OpenAI ``chat.completion``."""
    body = request_body(provider_model, messages, parameters)
    data = await sse.post_json(
        url=_url(base_url),
        headers=_headers(secret, "application/json"),
        body=body,
        timeout_seconds=timeout_seconds,
        secret=secret,
    )
    return to_completion(data, provider_model)


async def stream(
    *,
    base_url: str,
    secret: str,
    provider_model: str,
    messages: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    timeout_seconds: float,
) -> AsyncIterator[dict[str, Any]]:
    """One streamed Messages API call, as OpenAI ``chat.completion.chunk`` dicts as they arrive.

    ``timeout_seconds`` bounds each phase (connect, write, pool, and every read: the longest
    silence between two events), not the whole stream.
    """
    body = request_body(provider_model, messages, parameters, stream=True)
    message_id, model, created = "", provider_model, int(time.time())
    prompt_tokens = completion_tokens = 0

    def chunk(delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {
            "id": message_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}],
        }

    async with sse.open_stream(
        url=_url(base_url),
        headers=_headers(secret, "text/event-stream"),
        body=body,
        timeout_seconds=timeout_seconds,
        secret=secret,
    ) as events:
        async for event in events:
            if not event.data.strip():
                continue
            data = events.json(event)
            kind = data.get("type") or event.event
            if kind == "message_start":
                message = data.get("message") if isinstance(data.get("message"), Mapping) else {}
                message_id = str(message.get("id") or "")
                model = str(message.get("model") or provider_model)
                usage = message.get("usage") if isinstance(message.get("usage"), Mapping) else {}
                prompt_tokens = _count(usage.get("input_tokens"))
                completion_tokens = _count(usage.get("output_tokens"))
                events.started = True
                yield chunk({"role": "assistant"})
            elif kind == "content_block_start":
                block = data.get("content_block")
                if isinstance(block, Mapping) and block.get("type") == "text" and block.get("text"):
                    yield chunk({"content": str(block["text"])})
            elif kind == "content_block_delta":
                delta = data.get("delta")
                if isinstance(delta, Mapping) and delta.get("type") == "text_delta":
                    yield chunk({"content": str(delta.get("text", ""))})
            elif kind == "message_delta":
                delta = data.get("delta") if isinstance(data.get("delta"), Mapping) else {}
                usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
                if "output_tokens" in usage:
                    completion_tokens = _count(usage.get("output_tokens"))
                if "input_tokens" in usage:  # newer API versions repeat it, cumulative
                    prompt_tokens = _count(usage.get("input_tokens")) or prompt_tokens
                if (reason := finish_reason(delta.get("stop_reason"))) is not None:
                    yield chunk({}, reason)
            elif kind == "message_stop":
                yield {
                    "id": message_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [],
                    "usage": _usage(prompt_tokens, completion_tokens),
                }
                return
            elif kind == "error":
                error = data.get("error") if isinstance(data.get("error"), Mapping) else {}
                error_type = error.get("type")
                raise events.reported(ERROR_STATUSES.get(error_type), error_type, data)
            # "ping", "content_block_stop" and event types added later: nothing to pass on.
        raise events.ended("message_stop")

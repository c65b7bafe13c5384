"""The built-in deterministic provider: no network, same input → same output.

It answers an OpenAI-style chat request with an OpenAI ``chat.completion`` dict whose message
echoes the last user message, prefixed with ``[builtin] ``. Tokens are whitespace-separated
words: ``prompt_tokens`` counts the words of every message, ``completion_tokens`` those of the
answer. ``max_tokens`` truncates the answer (``finish_reason: "length"``). The id is a hash of the
request and ``created`` is 0, so two identical requests give byte-identical responses.

An optional latency (``latency_ms`` in the parameters, else in the provider's config) is slept
before answering, to stand in for a slow provider in demos and tests.
"""

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from apps.core.hashing import content_hash

PREFIX = "[builtin] "
DEFAULT_MODEL = "builtin-echo"


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of OpenAI's content-part list."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        return " ".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, Mapping) and part.get("type") == "text"
        )
    return str(content)


def count_tokens(text: str) -> int:
    return len(text.split())


def _latency_ms(parameters: Mapping[str, Any], config: Mapping[str, Any]) -> float:
    value = parameters.get("latency_ms", config.get("latency_ms", 0))
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError("latency_ms is a number of milliseconds, >= 0")
    return float(value)


def complete(
    messages: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any] | None = None,
    *,
    config: Mapping[str, Any] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` for ``messages``; deterministic, pure but for the latency."""
    parameters = dict(parameters or {})
    config = dict(config or {})
    latency = _latency_ms(parameters, config)
    model = str(parameters.get("model") or DEFAULT_MODEL)

    last_user = next(
        (_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), ""
    )
    words = (PREFIX + last_user).split()
    finish_reason = "stop"
    max_tokens = parameters.get("max_tokens") or parameters.get("max_completion_tokens")
    limited = isinstance(max_tokens, int) and not isinstance(max_tokens, bool) and max_tokens > 0
    if limited and len(words) > max_tokens:
        words = words[:max_tokens]
        finish_reason = "length"
    answer = " ".join(words)

    prompt_tokens = sum(count_tokens(_text(m.get("content"))) for m in messages)
    completion_tokens = len(words)
    request_hash = content_hash(
        {
            "messages": [dict(m) for m in messages],
            "parameters": {k: v for k, v in parameters.items() if k != "latency_ms"},
        }
    )
    if latency:
        sleep(latency / 1000)
    return {
        "id": f"chatcmpl-builtin-{request_hash[:24]}",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "builtin-1",
    }

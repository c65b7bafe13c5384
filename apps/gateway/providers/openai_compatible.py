"""The OpenAI-compatible adapter: OpenAI, vLLM, Ollama, llama.cpp server, most hosted APIs.

``complete`` posts one chat-completions request to ``{base_url}/chat/completions`` through the
shared pool (``gateway.http``) and returns the parsed JSON, or raises one of the typed
``Upstream*`` errors. It makes exactly one attempt; retries are the pipeline's job. The secret
goes only into the ``Authorization`` header, which is never logged nor put in an error.
"""

import email.utils
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from .. import http
from ..http import (
    UpstreamConnectionError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamTimeout,
)

__all__ = [
    "UpstreamConnectionError",
    "UpstreamHTTPError",
    "UpstreamProtocolError",
    "UpstreamTimeout",
    "complete",
    "parse_retry_after",
]

BODY_EXCERPT = 2000  # characters of an error body kept on the exception


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds)


def request_body(
    provider_model: str, messages: Sequence[Mapping[str, Any]], parameters: Mapping[str, Any]
) -> dict[str, Any]:
    body = {key: value for key, value in parameters.items() if key not in {"stream"}}
    body["model"] = provider_model
    body["messages"] = [dict(message) for message in messages]
    body["stream"] = False
    return body


async def complete(
    *,
    base_url: str,
    secret: str,
    provider_model: str,
    messages: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    timeout_seconds: float,
) -> dict[str, Any]:
    headers = {"Accept": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    url = base_url.rstrip("/") + "/chat/completions"
    try:
        response = await http.client().post(
            url,
            json=request_body(provider_model, messages, parameters),
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds),
        )
    except httpx.TimeoutException:
        raise UpstreamTimeout(f"No answer within {timeout_seconds:g} s.") from None
    except httpx.TransportError as exc:
        raise UpstreamConnectionError(f"{type(exc).__name__} talking to the provider.") from None
    if response.status_code >= 300:
        raise UpstreamHTTPError(
            response.status_code,
            parse_retry_after(response.headers.get("retry-after")),
            response.text[:BODY_EXCERPT],
        )
    try:
        data = response.json()
    except ValueError:
        raise UpstreamProtocolError("The provider's answer is not JSON.") from None
    if not isinstance(data, dict):
        raise UpstreamProtocolError("The provider's answer is not a JSON object.")
    return data

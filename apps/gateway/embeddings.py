"""Embeddings: one provider model turns texts into vectors (OpenAI's ``/embeddings`` shape).

    vectors = embed_sync(provider=provider, provider_model="text-embedding-3-small",
                         texts=["a", "b"], source=CallSource.EVALUATION)

Only OpenAI-compatible providers have an embeddings endpoint (``supports_embeddings``): the
built-in provider makes no network call and answers chat only, and Anthropic offers no
embeddings API. The request is ``POST {base_url}/embeddings`` with ``{"model", "input"}``
through the shared pool (``gateway.http``), with the provider's secret as a bearer token; the
answer is ``{"data": [{"index", "embedding"}...], "usage": {"prompt_tokens"}}``.

Failures are the chat adapter's (``providers.sse.post_json``): a non-2xx status is an
``UpstreamHTTPError``, a timeout ``UpstreamTimeout``, a connection failure
``UpstreamConnectionError``, an answer that is not an embeddings list ``UpstreamProtocolError``.
Retryable failures (timeouts, connection errors, 429, 5xx) are tried again up to the provider's
``max_retries`` with the pipeline's backoff. Embedding calls have no circuit breaker, no
response cache and no fallback chain (they are not a release's calls).

Every call is recorded as one ``ProviderCall`` (tokens in from the usage, none out; cost from
the price table's input price; the model version when given), whatever happened; a failure
then raises ``pipeline.UpstreamFailed``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from apps.core.exceptions import ApplicationError

from .http import UpstreamError, UpstreamProtocolError, UpstreamTimeout
from .models import CallOutcome, CallSource, Provider, ProviderKind
from .pipeline import (
    CallResult,
    UpstreamFailed,
    _sync,
    backoff_delay,
    call_cost,
    provider_call_record,
    provider_price_for,
)
from .providers import sse
from .services import provider_secret

if TYPE_CHECKING:
    from apps.catalog.models import ModelVersion

MAX_TEXTS = 256  # texts in one request
MAX_TEXT_CHARS = 100_000


def supports_embeddings(provider: Provider | None) -> bool:
    """Whether ``provider`` has an embeddings endpoint (OpenAI-compatible providers only)."""
    return provider is not None and provider.kind == ProviderKind.OPENAI_COMPATIBLE


def _url(base_url: str) -> str:
    return base_url.rstrip("/") + "/embeddings"


def _headers(secret: str) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return headers


def parse_embeddings(data: dict[str, Any], count: int) -> list[list[float]]:
    """The vectors of an OpenAI embeddings answer, in input order (or UpstreamProtocolError)."""
    items = data.get("data")
    if not isinstance(items, list) or len(items) != count:
        raise UpstreamProtocolError(
            f"The provider's embeddings answer does not hold {count} embedding(s)."
        )
    vectors: list[list[float] | None] = [None] * count
    for position, item in enumerate(items):
        if not isinstance(item, dict):
            raise UpstreamProtocolError("An item of the embeddings answer is not an object.")
        index = item.get("index", position)
        vector = item.get("embedding")
        if (
            isinstance(index, bool)
            or not isinstance(index, int)
            or not 0 <= index < count
            or vectors[index] is not None
        ):
            raise UpstreamProtocolError("The embeddings answer has a bad or repeated index.")
        if not isinstance(vector, list) or not vector:
            raise UpstreamProtocolError("An embedding is not a list of numbers.")
        numbers = []
        for x in vector:
            if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
                raise UpstreamProtocolError("An embedding is not a list of numbers.")
            numbers.append(float(x))
        vectors[index] = numbers
    return [v for v in vectors if v is not None]


def _prompt_tokens(data: dict[str, Any]) -> int:
    usage = data.get("usage")
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


async def embed(
    *,
    provider: Provider,
    secret: str,
    provider_model: str,
    texts: Sequence[str],
    timeout_seconds: float,
) -> dict[str, Any]:
    """One attempt: the provider's embeddings answer (a JSON object), or an ``Upstream*``."""
    return await sse.post_json(
        url=_url(provider.base_url),
        headers=_headers(secret),
        body={"model": provider_model, "input": list(texts)},
        timeout_seconds=timeout_seconds,
        secret=secret,
    )


@dataclass
class _Outcome:
    data: dict[str, Any] | None
    vectors: list[list[float]] | None
    failure: UpstreamError | None
    attempts: int
    errors: list[str]
    latency_ms: int


async def _with_retries(
    *, provider: Provider, secret: str, provider_model: str, texts: list[str]
) -> _Outcome:
    started = time.monotonic()
    attempts, errors = 0, []
    failure: UpstreamError | None = None
    for attempt in range(1, provider.max_retries + 2):
        attempts += 1
        try:
            data = await asyncio.wait_for(
                embed(
                    provider=provider,
                    secret=secret,
                    provider_model=provider_model,
                    texts=texts,
                    timeout_seconds=provider.timeout_seconds,
                ),
                timeout=provider.timeout_seconds,
            )
            vectors = parse_embeddings(data, len(texts))
        except TimeoutError:
            failure = UpstreamTimeout(f"No answer within {provider.timeout_seconds:g} s.")
        except UpstreamError as exc:
            failure = exc
        else:
            return _Outcome(
                data, vectors, None, attempts, errors, round((time.monotonic() - started) * 1000)
            )
        errors.append(failure.error_class)
        if not failure.retryable or attempt > provider.max_retries:
            break
        await asyncio.sleep(backoff_delay(attempt, failure))
    return _Outcome(
        None, None, failure, attempts, errors, round((time.monotonic() - started) * 1000)
    )


def embed_sync(
    *,
    provider: Provider,
    provider_model: str,
    texts: Sequence[str],
    model_version: ModelVersion | None = None,
    source: str = CallSource.EVALUATION,
) -> list[list[float]]:
    """The embeddings of ``texts`` (one vector each, in order), for sync code; recorded as one
    ``ProviderCall``. Raises ``ApplicationError`` for a provider without an embeddings endpoint
    or bad texts (nothing is called), ``UpstreamFailed`` when the call failed (recorded)."""
    if not supports_embeddings(provider):
        kind = provider.get_kind_display() if provider is not None else "no"
        raise ApplicationError(
            "no_embeddings",
            f"The provider {getattr(provider, 'slug', '?')!r} ({kind} provider) has no "
            "embeddings endpoint; only OpenAI-compatible providers do.",
        )
    if not provider.enabled:
        raise ApplicationError("provider_disabled", f"The provider {provider.slug!r} is disabled.")
    texts = [str(t) for t in texts]
    if not texts or len(texts) > MAX_TEXTS or any(len(t) > MAX_TEXT_CHARS for t in texts):
        raise ApplicationError(
            "invalid",
            f"Embed 1 to {MAX_TEXTS} texts of at most {MAX_TEXT_CHARS:,} characters each.",
        )
    secret = provider_secret(provider)
    outcome: _Outcome = _sync(
        _with_retries,
        provider=provider,
        secret=secret,
        provider_model=provider_model,
        texts=texts,
    )
    tokens_in = _prompt_tokens(outcome.data) if outcome.data else 0
    price = provider_price_for(provider=provider, provider_model=provider_model)
    cost = call_cost(price, tokens_in, 0) if outcome.failure is None else Decimal(0)
    failure = outcome.failure
    call = provider_call_record(
        provider=provider,
        provider_model=provider_model,
        attempts=outcome.attempts,
        outcome=CallOutcome.OK if failure is None else CallOutcome.ERROR,
        tokens_in=tokens_in,
        cost=cost,
        latency_ms=outcome.latency_ms,
        error_class=failure.error_class if failure else "",
        status_code=failure.status_code if failure else None,
        model_version=model_version,
        source=source,
    )
    if failure is not None:
        result = CallResult(
            response={},
            attempts=outcome.attempts,
            tokens_in=0,
            tokens_out=0,
            cost=Decimal(0),
            latency_ms=outcome.latency_ms,
            outcome=CallOutcome.ERROR,
            error_class=failure.error_class,
            status_code=failure.status_code,
            call_id=call.pk,
            errors=outcome.errors,
            provider_slug=provider.slug,
            provider_model=provider_model,
            model_version=model_version,
        )
        raise UpstreamFailed(result, failure)
    return outcome.vectors or []

"""The one call pipeline: every model call the portal makes goes through here.

    target = resolve_target(release=release)                     # or prompt_version + model_version
    result = run_chat_sync(target, variables={...}, source=CallSource.PLAYGROUND)
    async for chunk in stream_chat(target, variables={...}): ...  # OpenAI chunks as they arrive

The steps, in order:

1. **Render** the prompt version's messages with the variables (Jinja2 sandbox, JSON Schema), then
   append the caller's own messages.
2. **Response cache** (the release's policy: off, or exact match with a TTL; ``gateway.cache``).
   A hit answers without an upstream call and is recorded with ``cache_hit``.
3. For each **leg** of the chain (the primary model version, then the release's fallbacks):
   skip it when its provider is missing or disabled, or when its **circuit breaker**
   (``gateway.breaker``, one per provider model, shared by all processes) is open; otherwise
   **call with a timeout**, **retrying** retryable failures (timeouts, connection errors, 429
   honouring ``Retry-After``, 5xx; never another 4xx) with exponential backoff and full jitter.
   Retryable failures count against the breaker; a success closes it. The next leg is tried when
   a leg fails, except on a 400/413/422 (the request itself is wrong: no model will take it).
4. **Record one ``ProviderCall``** for the request, whatever happened: product, release, prompt
   and model version, provider, attempts over all legs, tokens, cost by the price table,
   latency, time to first token, cache hit, fallback index, outcome and error class. On failure
   ``UpstreamFailed`` (an ``ApplicationError``) is raised after recording.

Streaming passes the provider's chunks through as they arrive; retries and fallbacks happen only
before the first chunk. A stream that breaks after it started is recorded as failed
(``UpstreamStreamBroken``) and the error is raised to the consumer; a consumer that stops reading
is recorded as failed with ``ClientClosed``.

Async-first: one shared ``httpx.AsyncClient`` pool per event loop (``gateway.http``).
``run_chat_sync`` and ``call_chat_sync`` are the entry points for sync code (Celery tasks,
views). ``call_chat`` calls one provider model directly, without a prompt or a release.

Tunables (Django settings, with defaults): ``GATEWAY_BACKOFF_BASE_SECONDS`` (0.25),
``GATEWAY_BACKOFF_CAP_SECONDS`` (8), ``GATEWAY_RETRY_AFTER_CAP_SECONDS`` (30). Per provider, in
its ``config``: ``breaker_failure_threshold`` (5), ``breaker_cooldown_seconds`` (30); the
built-in provider also takes ``latency_ms`` and ``failure_rate``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from asgiref.sync import SyncToAsync, async_to_sync, sync_to_async
from django.conf import settings
from django.utils import timezone

from apps.catalog.prompting import render_messages
from apps.core.exceptions import ApplicationError

from . import http, metrics, recorder
from .breaker import DEFAULT_COOLDOWN_SECONDS, DEFAULT_FAILURE_THRESHOLD, Breaker
from .cache import CacheKeyParts, CachePolicy, cache_get, cache_set, parse_policy
from .http import (
    UpstreamError,
    UpstreamHTTPError,
    UpstreamProtocolError,
    UpstreamStreamBroken,
    UpstreamTimeout,
)
from .models import CallOutcome, CallSource, Provider, ProviderCall, ProviderKind, ProviderPrice
from .providers import anthropic, builtin, openai_compatible
from .services import provider_secret

if TYPE_CHECKING:
    from apps.catalog.models import ModelVersion, Product, PromptTemplateVersion
    from apps.releases.models import Release

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
COST_PLACES = Decimal("0.00000001")
# A failure with one of these statuses is the request's own fault: no retry, no fallback.
REQUEST_FAULT_STATUSES = frozenset({400, 413, 422})

# The built-in provider may sleep (``latency_ms``); it runs here, off the event loop. Not the
# loop's default executor: a sync caller's short-lived loop would wait for a timed-out sleep.
_BUILTIN_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="gateway-builtin")


class CircuitOpen(UpstreamError):
    """The leg's breaker is open: the call was not made."""


class ProviderUnavailable(UpstreamError):
    """The leg's provider does not exist or is disabled: the call was not made."""


class ClientClosed(UpstreamError):
    """The consumer of a stream stopped reading before it ended."""


@dataclass
class CallResult:
    response: dict[str, Any]
    attempts: int
    tokens_in: int
    tokens_out: int
    cost: Decimal
    latency_ms: int
    outcome: str
    error_class: str = ""
    status_code: int | None = None
    call_id: Any = None
    deferred_record: Any = None  # see ``_record(defer=True)``; run by ``record_now``
    errors: list[str] = field(default_factory=list)  # error class of each failed attempt
    ttft_ms: int | None = None
    cache_hit: bool = False
    fallback_index: int = 0
    provider_slug: str = ""
    provider_model: str = ""
    model_version: Any = None
    messages: list[dict] = field(default_factory=list)  # what was sent, after rendering

    def record_now(self) -> None:
        """Queue the call's row if its recording was deferred (once; no-op otherwise)."""
        queue, self.deferred_record = self.deferred_record, None
        if queue is not None:
            queue()

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    @property
    def output(self) -> str:
        """The answer's text (the first choice's message content)."""
        return completion_text(self.response)


class UpstreamFailed(ApplicationError):
    """Every leg failed (or a non-retryable attempt did); the call is recorded as an error."""

    status = 502

    def __init__(self, result: CallResult, cause: UpstreamError) -> None:
        if isinstance(cause, UpstreamTimeout):
            code, status = "upstream_timeout", 504
        elif isinstance(cause, CircuitOpen | ProviderUnavailable):
            code, status = "upstream_unavailable", 503
        else:
            code, status = "upstream_error", 502
        super().__init__(
            code,
            f"The provider call failed after {result.attempts} attempt(s): {cause}",
            {"error_class": result.error_class, "status_code": result.status_code},
            status=status,
        )
        self.result = result
        self.cause = cause


# ---- what a call runs: resolved once, from the database ---------------------------------------


@dataclass(frozen=True)
class Leg:
    """One model of the chain: where it runs and what it costs."""

    provider: Provider | None
    provider_slug: str
    provider_model: str
    parameters: Mapping[str, Any]
    model_version: ModelVersion | None = None
    price: ProviderPrice | None = None
    secret: str = field(default="", repr=False)
    unavailable: str = ""  # why the leg cannot be called, or ""

    def breaker(self) -> Breaker:
        config = (self.provider.config if self.provider else None) or {}
        return Breaker(
            (self.provider_slug, self.provider_model),
            failure_threshold=int(
                config.get("breaker_failure_threshold", DEFAULT_FAILURE_THRESHOLD)
            ),
            cooldown_seconds=float(
                config.get("breaker_cooldown_seconds", DEFAULT_COOLDOWN_SECONDS)
            ),
        )


@dataclass(frozen=True)
class Target:
    """What a call runs: an optional prompt version, the chain of legs and the call settings."""

    legs: tuple[Leg, ...]
    prompt_version: PromptTemplateVersion | None = None
    release: Release | None = None
    product: Product | None = None
    timeout_seconds: float = 30
    max_retries: int = 2
    max_tokens: int | None = None
    cache: CachePolicy = field(default_factory=lambda: parse_policy(None))


def _leg(model_version: ModelVersion) -> Leg:
    provider = Provider.objects.filter(slug=model_version.provider).first()
    unavailable = ""
    if provider is None:
        unavailable = f"The provider {model_version.provider!r} does not exist."
    elif not provider.enabled:
        unavailable = f"The provider {provider.slug!r} is disabled."
    return Leg(
        provider=provider,
        provider_slug=model_version.provider,
        provider_model=model_version.provider_model,
        parameters=dict(model_version.parameters or {}),
        model_version=model_version,
        price=provider_price_for(provider=provider, provider_model=model_version.provider_model)
        if provider
        else None,
        secret=provider_secret(provider) if provider and not unavailable else "",
        unavailable=unavailable,
    )


def resolve_target(
    *,
    release: Release | None = None,
    prompt_version: PromptTemplateVersion | None = None,
    model_version: ModelVersion | None = None,
) -> Target:
    """The target of a release (its prompt, model, fallbacks and settings), or of a prompt
    version + model version pair (no fallbacks, default settings). Runs a few queries: callers on
    a hot path keep the target and resolve again when the release or a provider changes."""
    from apps.catalog.models import ModelVersion

    if release is not None:
        if prompt_version is not None or model_version is not None:
            raise ApplicationError(
                "invalid", "Give a release, or a prompt version and a model version, not both."
            )
        conf = release.settings or {}
        fallback_ids = conf.get("fallback") or []
        by_id = {str(mv.pk): mv for mv in ModelVersion.objects.filter(pk__in=fallback_ids)}
        chain = [release.model_version] + [by_id[i] for i in fallback_ids if i in by_id]
        return Target(
            legs=tuple(_leg(mv) for mv in chain),
            prompt_version=release.prompt_version,
            release=release,
            product=release.product,
            timeout_seconds=float(conf.get("timeout_seconds", 30)),
            max_retries=int(conf.get("max_retries", 2)),
            max_tokens=conf.get("max_tokens"),
            cache=parse_policy(conf.get("cache")),
        )
    if model_version is None:
        raise ApplicationError(
            "invalid",
            "Give a release, or a model version (with a prompt version).",
            {"model_version": ["Required without a release."]},
        )
    leg = _leg(model_version)
    if leg.provider is None:
        return Target(legs=(leg,), prompt_version=prompt_version)
    # Without a release, the provider's own timeout and retries apply.
    return Target(
        legs=(leg,),
        prompt_version=prompt_version,
        timeout_seconds=float(leg.provider.timeout_seconds),
        max_retries=int(leg.provider.max_retries),
    )


def provider_target(
    *, provider: Provider, provider_model: str, timeout_seconds: float, max_retries: int
) -> Target:
    """A target that calls one provider model directly (no prompt, no release)."""
    unavailable = "" if provider.enabled else f"The provider {provider.slug!r} is disabled."
    leg = Leg(
        provider=provider,
        provider_slug=provider.slug,
        provider_model=provider_model,
        parameters={},
        price=provider_price_for(provider=provider, provider_model=provider_model),
        secret=provider_secret(provider) if provider.kind != ProviderKind.BUILTIN else "",
        unavailable=unavailable,
    )
    return Target(legs=(leg,), timeout_seconds=timeout_seconds, max_retries=max_retries)


# ---- cost and the record (sync: the database) ------------------------------------------------


def call_cost(price: ProviderPrice | None, tokens_in: int, tokens_out: int) -> Decimal:
    """What a call cost by the price table (per million tokens); 0 when the model has no price."""
    if price is None:
        return Decimal(0)
    cost = (
        Decimal(tokens_in) * price.input_per_million
        + Decimal(tokens_out) * price.output_per_million
    ) / MILLION
    return cost.quantize(COST_PLACES)


def provider_price_for(*, provider: Provider, provider_model: str) -> ProviderPrice | None:
    return ProviderPrice.objects.filter(provider=provider, provider_model=provider_model).first()


def provider_call_build(
    *,
    provider: Provider | None,
    provider_model: str,
    attempts: int,
    outcome: str,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost: Decimal = Decimal(0),
    latency_ms: int = 0,
    ttft_ms: int | None = None,
    cache_hit: bool = False,
    error_class: str = "",
    status_code: int | None = None,
    release=None,
    model_version=None,
    product=None,
    prompt_version=None,
    fallback_index: int = 0,
    streamed: bool = False,
    source: str = CallSource.API,
    request_messages: list | None = None,
    response_text: str = "",
    id: uuid.UUID | None = None,
    created_at=None,
) -> ProviderCall:
    """The row of one call, unsaved but with its id (no query: relations are passed loaded)."""
    if outcome not in CallOutcome.values:
        raise ApplicationError("invalid", f"Unknown call outcome {outcome!r}.")
    return ProviderCall(
        id=id or uuid.uuid4(),
        created_at=created_at or timezone.now(),
        provider=provider,
        provider_model=provider_model,
        attempts=attempts,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost=cost,
        latency_ms=latency_ms,
        ttft_ms=ttft_ms,
        cache_hit=cache_hit,
        outcome=outcome,
        error_class=error_class[:100],
        status_code=status_code,
        release=release,
        model_version=model_version,
        product=product,
        prompt_version=prompt_version,
        fallback_index=fallback_index,
        streamed=streamed,
        source=source,
        request_messages=request_messages,
        response_text=response_text or "",
    )


def provider_call_record(**fields: Any) -> ProviderCall:
    """Record one call now, from sync code (same arguments as :func:`provider_call_build`).

    No audit event: calls are telemetry, not governed changes. The audit trail records who
    changed what; a call changes nothing governed, and one event per call would bury the trail.
    Usage, cost and latency charts read ``ProviderCall`` instead.
    """
    call = provider_call_build(**fields)
    call.save(force_insert=True)
    metrics.observe_call(call)
    return call


def _record(
    target: Target,
    result: CallResult,
    leg: Leg | None,
    *,
    streamed: bool,
    source,
    defer: bool = False,
):
    """Queue the call's row on the loop's recorder (written in the background, in batches).

    With ``defer`` the row's id is set now and the row is built and queued by
    ``result.record_now()``, which the caller runs once its answer is out (the subscribers'
    gateway: building the row and observing the metrics cost a tenth of a millisecond)."""
    result.call_id = uuid.uuid4()
    at = timezone.now()
    if defer:
        result.deferred_record = lambda: _queue(
            target, result, leg, streamed=streamed, source=source, at=at
        )
        return
    _queue(target, result, leg, streamed=streamed, source=source, at=at)


def _queue(target: Target, result: CallResult, leg: Leg | None, *, streamed, source, at) -> None:
    call = provider_call_build(
        id=result.call_id,
        created_at=at,
        provider=leg.provider if leg else None,
        provider_model=leg.provider_model if leg else "",
        attempts=result.attempts,
        outcome=result.outcome,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        cost=result.cost,
        latency_ms=result.latency_ms,
        ttft_ms=result.ttft_ms,
        cache_hit=result.cache_hit,
        error_class=result.error_class,
        status_code=result.status_code,
        release=target.release,
        model_version=leg.model_version if leg else None,
        product=target.product,
        prompt_version=target.prompt_version,
        fallback_index=result.fallback_index,
        streamed=streamed,
        source=source,
        request_messages=result.messages or None,
        response_text=result.output,
    )
    recorder.recorder().add(call)
    metrics.observe_call(call)


async def aclose() -> None:
    """Before an event loop that made calls ends: write its pending call rows, close its pool."""
    try:
        await recorder.aclose()
    finally:
        await http.aclose()


# ---- shapes ----------------------------------------------------------------------------------


def completion_text(response: Mapping[str, Any]) -> str:
    choices = response.get("choices") or []
    if not choices or not isinstance(choices[0], Mapping):
        return ""
    message = choices[0].get("message") or {}
    content = message.get("content") if isinstance(message, Mapping) else None
    return content if isinstance(content, str) else ""


def _usage(response: Mapping[str, Any]) -> tuple[int, int]:
    usage = response.get("usage") or {}
    if not isinstance(usage, Mapping):
        return 0, 0

    def count(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    return count("prompt_tokens"), count("completion_tokens")


def completion_chunks(response: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """A whole ``chat.completion`` as the chunks a stream of it would have carried."""
    base = {
        "id": response.get("id", "chatcmpl"),
        "object": "chat.completion.chunk",
        "created": response.get("created", 0),
        "model": response.get("model", ""),
    }
    choice = (response.get("choices") or [{}])[0]
    yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
    words = completion_text(response).split(" ")
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        if piece:
            yield {
                **base,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
    yield {
        **base,
        "choices": [
            {"index": 0, "delta": {}, "finish_reason": choice.get("finish_reason") or "stop"}
        ],
    }
    if response.get("usage"):
        yield {**base, "choices": [], "usage": dict(response["usage"])}


@dataclass
class _Accumulated:
    """What a stream said, put back together (for the record and the cache)."""

    first: dict[str, Any] | None = None
    text: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None

    def add(self, chunk: Mapping[str, Any]) -> bool:
        """Take a chunk in; True when it carried content (for the time to first token)."""
        if self.first is None:
            self.first = dict(chunk)
        if isinstance(chunk.get("usage"), Mapping):
            self.usage = dict(chunk["usage"])
        content = False
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, Mapping):
                continue
            delta = choice.get("delta") or {}
            piece = delta.get("content") if isinstance(delta, Mapping) else None
            if isinstance(piece, str) and piece:
                self.text.append(piece)
                content = True
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return content

    def completion(self) -> dict[str, Any]:
        first = self.first or {}
        out = {
            "id": first.get("id", "chatcmpl"),
            "object": "chat.completion",
            "created": first.get("created", 0),
            "model": first.get("model", ""),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(self.text)},
                    "logprobs": None,
                    "finish_reason": self.finish_reason or "stop",
                }
            ],
        }
        if self.usage:
            out["usage"] = self.usage
        return out


# ---- one attempt -----------------------------------------------------------------------------


def _builtin_failure(provider: Provider) -> None:
    rate = (provider.config or {}).get("failure_rate", 0)
    if rate and random.random() < float(rate):  # noqa: S311 (simulated flakiness)
        raise UpstreamHTTPError(503, body="The built-in provider's simulated failure.")


async def _attempt(
    leg: Leg, messages: Sequence[Mapping[str, Any]], parameters: Mapping[str, Any], timeout: float
) -> dict[str, Any]:
    provider = leg.provider
    if provider is None:  # usable() refuses such a leg before any attempt
        raise ProviderUnavailable(leg.unavailable or "No provider.")
    if provider.kind == ProviderKind.BUILTIN:
        _builtin_failure(provider)
        run = functools.partial(
            builtin.complete,
            messages,
            {**parameters, "model": leg.provider_model},
            config=provider.config,
        )
        work = asyncio.get_running_loop().run_in_executor(_BUILTIN_THREADS, run)
    else:
        adapter = anthropic if provider.kind == ProviderKind.ANTHROPIC else openai_compatible
        work = adapter.complete(
            base_url=provider.base_url,
            secret=leg.secret,
            provider_model=leg.provider_model,
            messages=messages,
            parameters=parameters,
            timeout_seconds=timeout,
        )
    try:
        # The adapter has its own per-phase timeouts; this bounds the attempt as a whole (in
        # this task: ``asyncio.wait_for`` would run the call in a task of its own).
        async with asyncio.timeout(timeout):
            return await work
    except TimeoutError:
        raise UpstreamTimeout(f"No answer within {timeout:g} s.") from None


async def _builtin_stream(
    leg: Leg, messages: Sequence[Mapping[str, Any]], parameters: Mapping[str, Any], timeout: float
) -> AsyncIterator[dict[str, Any]]:
    response = await _attempt(leg, messages, parameters, timeout)
    for chunk in completion_chunks(response):
        yield chunk


def _stream(
    leg: Leg, messages: Sequence[Mapping[str, Any]], parameters: Mapping[str, Any], timeout: float
) -> AsyncIterator[dict[str, Any]]:
    provider = leg.provider
    if provider is None:  # usable() refuses such a leg before any attempt
        raise ProviderUnavailable(leg.unavailable or "No provider.")
    if provider.kind == ProviderKind.BUILTIN:
        return _builtin_stream(leg, messages, parameters, timeout)
    adapter = anthropic if provider.kind == ProviderKind.ANTHROPIC else openai_compatible
    return adapter.stream(
        base_url=provider.base_url,
        secret=leg.secret,
        provider_model=leg.provider_model,
        messages=messages,
        parameters=parameters,
        timeout_seconds=timeout,
    )


def backoff_delay(attempt: int, error: UpstreamError) -> float:
    """Seconds to wait after failed ``attempt`` (1-based): Retry-After on 429, else full jitter."""
    if isinstance(error, UpstreamHTTPError) and error.retry_after is not None:
        cap = float(settings.GATEWAY_RETRY_AFTER_CAP_SECONDS)
        return min(error.retry_after, cap)
    base = float(settings.GATEWAY_BACKOFF_BASE_SECONDS)
    cap = float(settings.GATEWAY_BACKOFF_CAP_SECONDS)
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 (jitter)


def _falls_back(error: UpstreamError) -> bool:
    """Whether the next leg may succeed where this one failed (not when the request is wrong)."""
    return not (
        isinstance(error, UpstreamHTTPError) and error.status_code in REQUEST_FAULT_STATUSES
    )


def _trips_breaker(error: UpstreamError) -> bool:
    """Failures that say the provider model is unhealthy (not the caller's bad request)."""
    if isinstance(error, UpstreamStreamBroken):
        return True
    return error.retryable and not isinstance(error, CircuitOpen | ProviderUnavailable)


# ---- the pipeline ----------------------------------------------------------------------------


@dataclass
class _Run:
    """The state of one request through the pipeline."""

    target: Target
    messages: list[dict]
    overrides: dict[str, Any]
    source: str
    started: float = field(default_factory=time.monotonic)
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    failure: UpstreamError | None = None
    leg: Leg | None = None
    leg_index: int = 0
    breaker_clean: bool = False  # the current leg's breaker: closed, no failure counted
    # The caller read the first leg's breaker closed with no failure counted an instant ago
    # (the portal's gateway, in its rate-limit round trip): its ``allow`` is not asked again.
    breaker_checked: bool = False

    def succeeded(self, leg: Leg) -> None:
        if not self.breaker_clean:
            leg.breaker().record_success()

    def parameters(self, leg: Leg) -> dict[str, Any]:
        """The model version's parameters < the prompt version's < the release's < the call's."""
        pv = self.target.prompt_version
        out = {**leg.parameters, **((pv.parameters if pv else None) or {})}
        if self.target.max_tokens:
            out["max_tokens"] = self.target.max_tokens
        out.update(self.overrides)
        out.pop("stream", None)
        out.pop("stream_options", None)
        out.pop("model", None)
        return out

    def cache_parts(self) -> CacheKeyParts:
        leg = self.target.legs[0]
        return CacheKeyParts(
            provider_slug=leg.provider_slug,
            provider_model=leg.provider_model,
            messages=self.messages,
            parameters=self.parameters(leg),
        )

    def elapsed_ms(self) -> int:
        return round((time.monotonic() - self.started) * 1000)

    def legs(self) -> Iterator[Leg]:
        """The legs to try, in order: a leg whose provider is unavailable or whose breaker is
        open is skipped (and counted as a failure of the request)."""
        for index, leg in enumerate(self.target.legs):
            self.leg, self.leg_index = leg, index
            refused = self.usable(leg)
            if refused is not None:
                self.failure = refused
                self.errors.append(refused.error_class)
                continue
            yield leg

    def usable(self, leg: Leg) -> UpstreamError | None:
        """Why ``leg`` is not called now, or None. Asking the breaker may take the probe."""
        if leg.unavailable or leg.provider is None:
            return ProviderUnavailable(leg.unavailable or "No provider.")
        if self.breaker_checked and leg is self.target.legs[0]:
            self.breaker_checked = False  # once: a retry or a later leg asks the breaker
            self.breaker_clean = True
            return None
        allowed, self.breaker_clean = leg.breaker().allow_clean()
        if not allowed:
            return CircuitOpen(
                f"The circuit breaker of {leg.provider_slug}/{leg.provider_model} is open."
            )
        return None

    def failed(self, leg: Leg, error: UpstreamError) -> None:
        self.failure = error
        self.errors.append(error.error_class)
        if _trips_breaker(error):
            leg.breaker().record_failure()
            self.breaker_clean = False  # a later success must reset the count

    def result(self, response: dict[str, Any] | None, *, ttft_ms: int | None = None) -> CallResult:
        leg = self.leg or self.target.legs[0]
        base = {
            "attempts": self.attempts,
            "latency_ms": self.elapsed_ms(),
            "errors": self.errors,
            "fallback_index": self.leg_index,
            "provider_slug": leg.provider_slug,
            "provider_model": leg.provider_model,
            "model_version": leg.model_version,
            "messages": self.messages,
        }
        if response is None:
            failure = self.failure or UpstreamProtocolError("No answer.")
            return CallResult(
                response={},
                tokens_in=0,
                tokens_out=0,
                cost=Decimal(0),
                outcome=CallOutcome.ERROR,
                error_class=failure.error_class,
                status_code=failure.status_code,
                **base,
            )
        tokens_in, tokens_out = _usage(response)
        latency = base["latency_ms"]
        return CallResult(
            response=response,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost=call_cost(leg.price, tokens_in, tokens_out),
            outcome=CallOutcome.OK,
            ttft_ms=latency if ttft_ms is None else ttft_ms,
            **base,
        )

    def log_retry(self, leg: Leg, error: UpstreamError, delay: float) -> None:
        logger.warning(
            "provider %s model %s attempt %d failed (%s, status %s); retrying in %.2f s",
            leg.provider_slug,
            leg.provider_model,
            self.attempts,
            error.error_class,
            error.status_code,
            delay,
        )

    def log_failure(self) -> None:
        failure = self.failure
        logger.warning(
            "call to %s failed after %d attempt(s): %s (status %s)",
            "/".join(f"{leg.provider_slug}:{leg.provider_model}" for leg in self.target.legs),
            self.attempts,
            failure.error_class if failure else "?",
            failure.status_code if failure else None,
        )


def _render(target: Target, variables: Any, messages: Sequence[Mapping[str, Any]] | None):
    rendered: list[dict] = []
    pv = target.prompt_version
    if pv is not None:
        rendered = render_messages(pv.messages, pv.variables_schema, variables)
    rendered.extend(dict(m) for m in messages or [])
    if not rendered:
        raise ApplicationError("invalid", "Nothing to send: no prompt and no messages.")
    return rendered


def _start(target, variables, messages, parameters, source, breaker_checked=False) -> _Run:
    if not target.legs:
        raise ApplicationError("invalid", "The target has no model to call.")
    return _Run(
        target=target,
        messages=_render(target, variables, messages),
        overrides=dict(parameters or {}),
        source=source,
        breaker_checked=breaker_checked,
    )


async def _cached(run: _Run) -> dict[str, Any] | None:
    if not run.target.cache.enabled:
        return None
    return await sync_to_async(cache_get, thread_sensitive=False)(
        run.target.cache, run.cache_parts()
    )


async def _store(run: _Run, response: dict[str, Any]) -> None:
    if run.target.cache.enabled:
        await sync_to_async(cache_set, thread_sensitive=False)(
            run.target.cache, run.cache_parts(), response
        )


async def run_chat(
    target: Target,
    *,
    variables: Mapping[str, Any] | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
    parameters: Mapping[str, Any] | None = None,
    source: str = CallSource.API,
    breaker_checked: bool = False,
    defer_record: bool = False,
) -> CallResult:
    """Run one chat request through the whole pipeline; returns the result, recorded (with
    ``defer_record``, an answered call's row is queued by ``result.record_now()``: the caller
    must run it, in a ``finally``).

    Raises ``ApplicationError`` (400) for bad variables before anything is called, and
    ``UpstreamFailed`` (502/503/504, with ``.result``) after recording a failed call.
    ``breaker_checked``: the caller has just read the first leg's breaker closed with no
    failure counted (``breaker.CLEAN_LUA``), so it is not asked again.
    """
    run = _start(target, variables, messages, parameters, source, breaker_checked)
    cached = await _cached(run)
    if cached is not None:
        result = run.result(cached)
        result.cache_hit, result.cost, result.ttft_ms = True, Decimal(0), result.latency_ms
        _record(target, result, target.legs[0], streamed=False, source=source)
        return result

    response: dict[str, Any] | None = None
    for leg in run.legs():
        params = run.parameters(leg)
        for leg_attempt in range(1, target.max_retries + 2):
            run.attempts += 1
            try:
                response = await _attempt(leg, run.messages, params, target.timeout_seconds)
            except UpstreamError as exc:
                run.failed(leg, exc)
            except ValueError as exc:  # the built-in provider refusing its parameters
                run.failed(leg, UpstreamProtocolError(str(exc)))
            else:
                run.succeeded(leg)
                break
            error = run.failure
            if not error.retryable or leg_attempt > target.max_retries:
                break
            delay = backoff_delay(leg_attempt, error)
            run.log_retry(leg, error, delay)
            await asyncio.sleep(delay)
        if response is not None or not _falls_back(run.failure):
            break

    result = run.result(response)
    _record(
        target,
        result,
        run.leg,
        streamed=False,
        source=source,
        defer=defer_record and response is not None,
    )
    if response is None:
        run.log_failure()
        raise UpstreamFailed(result, run.failure or UpstreamProtocolError("No answer."))
    await _store(run, response)
    return result


class ChatStream:
    """``async for chunk in stream_chat(...)``: OpenAI ``chat.completion.chunk`` dicts as they
    arrive, the last one carrying ``usage`` (``choices: []``). ``result`` is set once the stream
    has ended (or broken) and been recorded."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self.result: CallResult | None = None
        self._gen = self._chunks()

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await anext(self._gen)

    async def aclose(self) -> None:
        """Stop reading: the upstream stream is closed and the call recorded as ``ClientClosed``
        (a no-op once the stream has ended). Consumers that may stop early must call it (or use
        ``contextlib.aclosing``)."""
        await self._gen.aclose()

    def _finish(self, response, acc: _Accumulated | None = None, ttft=None, **extra):
        run = self._run
        result = run.result(response, ttft_ms=ttft)
        for name, value in extra.items():
            setattr(result, name, value)
        if response is None and acc is not None and acc.usage:
            result.tokens_in, result.tokens_out = _usage({"usage": acc.usage})
            leg = run.leg or run.target.legs[0]
            result.cost = call_cost(leg.price, result.tokens_in, result.tokens_out)
        if response is None and ttft is not None:
            result.ttft_ms = ttft
        self.result = result
        _record(run.target, result, run.leg, streamed=True, source=run.source)
        return result

    async def _chunks(self) -> AsyncIterator[dict[str, Any]]:
        run = self._run
        target = run.target
        cached = await _cached(run)
        if cached is not None:
            for chunk in completion_chunks(cached):
                yield chunk
            self._finish(cached, cache_hit=True, cost=Decimal(0))
            return

        for leg in run.legs():
            params = run.parameters(leg)
            for leg_attempt in range(1, target.max_retries + 2):
                run.attempts += 1
                upstream = _stream(leg, run.messages, params, target.timeout_seconds)
                acc = _Accumulated()
                ttft: int | None = None
                try:
                    try:
                        first = await asyncio.wait_for(
                            anext(upstream), timeout=target.timeout_seconds
                        )
                    except TimeoutError:
                        raise UpstreamTimeout(
                            f"No first chunk within {target.timeout_seconds:g} s."
                        ) from None
                    except StopAsyncIteration:
                        raise UpstreamProtocolError("The stream ended before it began.") from None
                    except ValueError as exc:
                        raise UpstreamProtocolError(str(exc)) from None
                except UpstreamError as exc:
                    await upstream.aclose()
                    run.failed(leg, exc)
                    if not exc.retryable or leg_attempt > target.max_retries:
                        break
                    delay = backoff_delay(leg_attempt, exc)
                    run.log_retry(leg, exc, delay)
                    await asyncio.sleep(delay)
                    continue

                # The stream has begun: from here on there is no retry and no fallback.
                if acc.add(first):
                    ttft = run.elapsed_ms()
                try:
                    yield first
                    async for chunk in upstream:
                        if acc.add(chunk) and ttft is None:
                            ttft = run.elapsed_ms()
                        yield chunk
                except UpstreamError as exc:
                    run.failed(leg, exc)
                    self._finish(None, acc, ttft)
                    run.log_failure()
                    raise UpstreamFailed(self.result, exc) from None
                except (GeneratorExit, asyncio.CancelledError):
                    run.failure = ClientClosed("The consumer stopped reading the stream.")
                    run.errors.append(run.failure.error_class)
                    self._finish(None, acc, ttft)
                    raise
                finally:
                    await upstream.aclose()
                run.succeeded(leg)
                response = acc.completion()
                self._finish(response, acc, ttft)
                await _store(run, response)
                return
            if not _falls_back(run.failure):
                break

        self._finish(None)
        run.log_failure()
        raise UpstreamFailed(self.result, run.failure or UpstreamProtocolError("No answer."))


def stream_chat(
    target: Target,
    *,
    variables: Mapping[str, Any] | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
    parameters: Mapping[str, Any] | None = None,
    source: str = CallSource.API,
    breaker_checked: bool = False,
) -> ChatStream:
    """The streaming form of :func:`run_chat`; rendering errors are raised here, at once."""
    return ChatStream(_start(target, variables, messages, parameters, source, breaker_checked))


# ---- entry points for sync code and for one provider model -----------------------------------


def _sync(coro_fn, *args: Any, **kwargs: Any):
    """Run ``coro_fn`` from sync code. Outside any event loop asgiref runs it in a fresh loop
    that ends with it, so that loop's connection pool is closed first; from a thread an event
    loop handed work to (``sync_to_async``), it runs on that loop and shares its pool."""
    outer_loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)

    async def run():
        try:
            return await coro_fn(*args, **kwargs)
        finally:
            if asyncio.get_running_loop() is not outer_loop:
                await aclose()
            else:
                await recorder.flush()

    return async_to_sync(run)()


def run_chat_sync(target: Target, **kwargs: Any) -> CallResult:
    """:func:`run_chat` for sync code (Celery tasks, views); same arguments, same result."""
    return _sync(run_chat, target, **kwargs)


async def call_chat(
    *,
    provider: Provider,
    provider_model: str,
    messages: list[dict],
    parameters: dict,
    timeout_seconds: float,
    max_retries: int,
    release=None,
    model_version=None,
    source: str = CallSource.API,
) -> CallResult:
    """Call one provider model with ``messages`` (no prompt, no fallback); recorded."""
    target = await sync_to_async(provider_target, thread_sensitive=True)(
        provider=provider,
        provider_model=provider_model,
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
    )
    if release is not None or model_version is not None:
        legs = tuple(replace(leg, model_version=model_version) for leg in target.legs)
        product = (
            await sync_to_async(lambda: release.product, thread_sensitive=True)()
            if release
            else None
        )
        target = replace(target, legs=legs, release=release, product=product)
    return await run_chat(target, messages=messages, parameters=parameters, source=source)


def call_chat_sync(**kwargs: Any) -> CallResult:
    """:func:`call_chat` for sync code; same arguments, same result."""
    return _sync(call_chat, **kwargs)


async def run_many(
    target: Target,
    requests: Sequence[Mapping[str, Any]],
    *,
    concurrency: int,
    source: str = CallSource.BATCH,
) -> list[CallResult | ApplicationError]:
    """Run many requests (each a dict of :func:`run_chat` keyword arguments: ``variables``,
    ``messages``, ``parameters``) with at most ``concurrency`` in flight; results in order, an
    ``ApplicationError`` (bad variables, or ``UpstreamFailed`` with its recorded result) in
    place of a failed one."""
    gate = asyncio.Semaphore(max(1, int(concurrency)))

    async def one(request: Mapping[str, Any]) -> CallResult | ApplicationError:
        async with gate:
            try:
                return await run_chat(target, source=source, **request)
            except ApplicationError as exc:
                return exc

    return list(await asyncio.gather(*(one(r) for r in requests)))


def run_many_sync(target: Target, requests: Sequence[Mapping[str, Any]], **kwargs: Any):
    """:func:`run_many` for sync code (a Celery task); same arguments, same result."""
    return _sync(run_many, target, requests, **kwargs)

"""The call pipeline core: one provider, one request, with timeout, retry and backoff.

``call_chat`` sends one chat request to a provider (dispatching on its kind), retries retryable
failures (timeouts, connection errors, 429 and 5xx; never another 4xx) with exponential backoff
and full jitter (a 429's ``Retry-After`` is honoured, capped), and records exactly one
``ProviderCall`` for the whole call, whether it succeeded or failed. On failure it raises
``UpstreamFailed`` (an ``ApplicationError`` carrying the ``CallResult``) after recording.

Rendering, the cache, the circuit breaker and the fallback chain sit around this core and are
not part of it. ``call_chat_sync`` is the entry point for sync code (Celery tasks, views).

Tunables (Django settings, with defaults): ``GATEWAY_BACKOFF_BASE_SECONDS`` (0.25),
``GATEWAY_BACKOFF_CAP_SECONDS`` (8), ``GATEWAY_RETRY_AFTER_CAP_SECONDS`` (30).
"""

import asyncio
import functools
import logging
import random
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync, sync_to_async
from django.conf import settings
from django.db import transaction

from apps.core.exceptions import ApplicationError

from . import http
from .http import UpstreamError, UpstreamHTTPError, UpstreamProtocolError, UpstreamTimeout
from .models import CallOutcome, Provider, ProviderCall, ProviderKind, ProviderPrice
from .providers import builtin, openai_compatible
from .services import provider_secret

logger = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
COST_PLACES = Decimal("0.00000001")

# The built-in provider may sleep (``latency_ms``); it runs here, off the event loop. Not the
# loop's default executor: a sync caller's short-lived loop would wait for a timed-out sleep.
_BUILTIN_THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="gateway-builtin")


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
    errors: list[str] = field(default_factory=list)  # error class of each failed attempt

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


class UpstreamFailed(ApplicationError):
    """Every attempt failed (or a non-retryable one did); the call is recorded as an error."""

    status = 502

    def __init__(self, result: CallResult, cause: UpstreamError) -> None:
        super().__init__(
            "upstream_timeout" if isinstance(cause, UpstreamTimeout) else "upstream_error",
            f"The provider call failed after {result.attempts} attempt(s): {cause}",
            {"error_class": result.error_class, "status_code": result.status_code},
            status=504 if isinstance(cause, UpstreamTimeout) else 502,
        )
        self.result = result
        self.cause = cause


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


def provider_call_record(
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
) -> ProviderCall:
    """Record one call. No audit event: calls are telemetry, not governed changes.

    The audit trail records who changed what; a call changes nothing governed, and one event per
    call would bury the trail. Usage, cost and latency charts read ``ProviderCall`` instead.
    """
    if outcome not in CallOutcome.values:
        raise ApplicationError("invalid", f"Unknown call outcome {outcome!r}.")
    with transaction.atomic():
        return ProviderCall.objects.create(
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
        )


# ---- one attempt -----------------------------------------------------------------------------


async def _attempt(
    provider: Provider,
    secret: str,
    provider_model: str,
    messages: Sequence[Mapping[str, Any]],
    parameters: Mapping[str, Any],
    timeout_seconds: float,
) -> dict[str, Any]:
    if provider.kind == ProviderKind.BUILTIN:
        run = functools.partial(
            builtin.complete,
            messages,
            {**parameters, "model": provider_model},
            config=provider.config,
        )
        work = asyncio.get_running_loop().run_in_executor(_BUILTIN_THREADS, run)
    else:
        work = openai_compatible.complete(
            base_url=provider.base_url,
            secret=secret,
            provider_model=provider_model,
            messages=messages,
            parameters=parameters,
            timeout_seconds=timeout_seconds,
        )
    try:
        # The adapter has its own per-phase timeouts; this bounds the attempt as a whole.
        return await asyncio.wait_for(work, timeout=timeout_seconds)
    except TimeoutError:
        raise UpstreamTimeout(f"No answer within {timeout_seconds:g} s.") from None


def backoff_delay(attempt: int, error: UpstreamError) -> float:
    """Seconds to wait after failed ``attempt`` (1-based): Retry-After on 429, else full jitter."""
    if isinstance(error, UpstreamHTTPError) and error.retry_after is not None:
        cap = float(settings.GATEWAY_RETRY_AFTER_CAP_SECONDS)
        return min(error.retry_after, cap)
    base = float(settings.GATEWAY_BACKOFF_BASE_SECONDS)
    cap = float(settings.GATEWAY_BACKOFF_CAP_SECONDS)
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))  # noqa: S311 (jitter)


def _usage(response: Mapping[str, Any]) -> tuple[int, int]:
    usage = response.get("usage") or {}
    if not isinstance(usage, Mapping):
        return 0, 0

    def count(key: str) -> int:
        value = usage.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0

    return count("prompt_tokens"), count("completion_tokens")


# ---- the call --------------------------------------------------------------------------------


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
) -> CallResult:
    """Call ``provider`` with up to ``max_retries`` retries; record one ``ProviderCall``."""
    if provider.kind not in (ProviderKind.BUILTIN, ProviderKind.OPENAI_COMPATIBLE):
        raise ApplicationError(
            "not_supported",
            f"Calls to {provider.get_kind_display()} providers are not supported yet.",
            status=501,
        )
    secret = provider_secret(provider) if provider.kind != ProviderKind.BUILTIN else ""
    started = time.monotonic()
    attempts = 0
    errors: list[str] = []
    response: dict[str, Any] | None = None
    failure: UpstreamError | None = None
    while True:
        attempts += 1
        try:
            response = await _attempt(
                provider, secret, provider_model, messages, parameters, timeout_seconds
            )
        except UpstreamError as exc:
            failure = exc
        except ValueError as exc:  # the built-in provider refusing its parameters
            failure = UpstreamProtocolError(str(exc))
        else:
            failure = None
            break
        errors.append(failure.error_class)
        if not failure.retryable or attempts > max_retries:
            break
        delay = backoff_delay(attempts, failure)
        logger.warning(
            "provider %s model %s attempt %d failed (%s, status %s); retrying in %.2f s",
            provider.slug,
            provider_model,
            attempts,
            failure.error_class,
            failure.status_code,
            delay,
        )
        await asyncio.sleep(delay)
    latency_ms = round((time.monotonic() - started) * 1000)

    if failure is None and response is not None:
        tokens_in, tokens_out = _usage(response)
        price = await sync_to_async(provider_price_for, thread_sensitive=True)(
            provider=provider, provider_model=provider_model
        )
        result = CallResult(
            response=response,
            attempts=attempts,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost=call_cost(price, tokens_in, tokens_out),
            latency_ms=latency_ms,
            outcome=CallOutcome.OK,
            errors=errors,
        )
    else:
        failure = failure or UpstreamProtocolError("No answer.")
        result = CallResult(
            response={},
            attempts=attempts,
            tokens_in=0,
            tokens_out=0,
            cost=Decimal(0),
            latency_ms=latency_ms,
            outcome=CallOutcome.ERROR,
            error_class=failure.error_class,
            status_code=failure.status_code,
            errors=errors,
        )
    call = await sync_to_async(provider_call_record, thread_sensitive=True)(
        provider=provider,
        provider_model=provider_model,
        attempts=result.attempts,
        outcome=result.outcome,
        tokens_in=result.tokens_in,
        tokens_out=result.tokens_out,
        cost=result.cost,
        latency_ms=result.latency_ms,
        error_class=result.error_class,
        status_code=result.status_code,
        release=release,
        model_version=model_version,
    )
    result.call_id = call.pk
    if failure is not None:
        logger.warning(
            "provider %s model %s failed after %d attempt(s): %s (status %s)",
            provider.slug,
            provider_model,
            attempts,
            failure.error_class,
            failure.status_code,
        )
        raise UpstreamFailed(result, failure)
    return result


def call_chat_sync(**kwargs: Any) -> CallResult:
    """``call_chat`` for sync code (Celery tasks, views); same arguments, same result.

    Called outside any event loop, asgiref runs the call in a fresh loop that ends with it, so
    that loop's connection pool is closed before it ends. Called from a thread that an event loop
    handed work to (``sync_to_async``), the call runs on that loop and shares its pool.
    """
    outer_loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)

    async def run() -> CallResult:
        try:
            return await call_chat(**kwargs)
        finally:
            if asyncio.get_running_loop() is not outer_loop:
                await http.aclose()

    return async_to_sync(run)()

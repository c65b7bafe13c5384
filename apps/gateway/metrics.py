"""Prometheus metrics of provider calls, served with the rest at ``/metrics``.

The pipeline (``gateway.pipeline``) calls ``observe_call(call)`` once for every recorded
``ProviderCall``. The series (labels in braces):

- ``plm_provider_calls_total`` {provider, provider_model, outcome, source}: calls;
- ``plm_provider_call_latency_seconds`` {provider, outcome}: histogram of the whole call
  (retries and fallbacks included), buckets from 5 ms to 120 s;
- ``plm_provider_call_ttft_seconds`` {provider}: histogram of the time to the first token, for
  the calls that measured one (streamed calls);
- ``plm_provider_tokens_total`` {provider, direction=in|out}: tokens;
- ``plm_provider_cost_total`` {provider}: cost in the currency of the price tables, a float;
- ``plm_provider_cache_hits_total`` {provider}: calls answered from the response cache.

``provider`` is the provider's slug (``none`` for a call that reached no provider). Labels stay
bounded: outcome and source are choices (anything else counts as ``other``), and a process
labels at most ``MAX_PROVIDER_MODELS`` distinct provider models (the rest as ``other``), so a
caller naming arbitrary models cannot blow up the series count.

``observe_call`` is on the hot path: it runs no SQL (the slug comes from the call's cached
``provider`` or from a per-process id → slug map, slugs being immutable) and never raises —
a metrics bug is logged, it never fails a call.

Several processes (gunicorn/uvicorn workers, Celery workers)
------------------------------------------------------------
Each process counts in its own memory by default, so ``/metrics`` would show only the calls of
the web process that answers the scrape, never those made by Celery workers (playground,
batch and evaluation calls). Set ``PROMETHEUS_MULTIPROC_DIR`` to a directory shared by every
web and worker process of a host (a volume mounted in each container) to use prometheus_client's
multiprocess mode:

- the variable must be set before ``prometheus_client`` is imported: in the process's
  environment (``.env`` works too: the settings read it before any app, hence
  prometheus_client, is imported); the directory must exist, be writable by every process, and
  be emptied when the deployment starts, before any process (files of an earlier run would
  otherwise be summed in);
- every process then writes its samples to ``<dir>/<type>_<pid>.db`` files; django-prometheus'
  ``/metrics`` view (``django_prometheus.exports.ExportToDjangoView``) sees the variable and
  answers from a fresh ``CollectorRegistry`` with a ``MultiProcessCollector`` over the
  directory, which sums counters and histograms over all processes, dead ones included;
- the metrics here are counters and histograms only, which need no ``multiprocess_mode``
  (gauges would: each gauge must name how its per-process values combine, such as
  ``livesum``); ``_created`` samples and the process/platform collectors are not exported in
  that mode.

The tests read the default in-process registry (``prometheus_client.REGISTRY``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import Counter, Histogram

if TYPE_CHECKING:
    from .models import ProviderCall

logger = logging.getLogger(__name__)

# 5 ms (a cache hit, the built-in provider) to 2 min (a long generation with retries).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

NO_PROVIDER = "none"
OTHER = "other"
UNKNOWN = "unknown"  # a provider id whose slug this process has not seen (never queried)
MAX_PROVIDER_MODELS = 200
MAX_LABEL_LENGTH = 100
OUTCOMES = frozenset({"ok", "error"})
SOURCES = frozenset({"playground", "batch", "evaluation", "gateway", "api"})

CALLS = Counter(
    "plm_provider_calls",
    "Calls through the gateway pipeline, one per recorded ProviderCall.",
    ["provider", "provider_model", "outcome", "source"],
)
LATENCY = Histogram(
    "plm_provider_call_latency_seconds",
    "Latency of a whole provider call (retries and fallbacks included), in seconds.",
    ["provider", "outcome"],
    buckets=LATENCY_BUCKETS,
)
TTFT = Histogram(
    "plm_provider_call_ttft_seconds",
    "Time to the first token of a provider call that measured it, in seconds.",
    ["provider"],
    buckets=TTFT_BUCKETS,
)
TOKENS = Counter(
    "plm_provider_tokens",
    "Tokens sent to (in) and received from (out) providers.",
    ["provider", "direction"],
)
COST = Counter(
    "plm_provider_cost",
    "Cost of provider calls, in the currency units of the price tables.",
    ["provider"],
)
CACHE_HITS = Counter(
    "plm_provider_cache_hits",
    "Provider calls answered from the response cache.",
    ["provider"],
)

# Provider slugs never change (set on create only): an id seen once is labelled without a query.
_provider_slugs: dict = {}
_provider_models: set[str] = set()


def _provider_label(call: ProviderCall) -> str:
    provider_id = call.provider_id
    if provider_id is None:
        return NO_PROVIDER
    field = type(call)._meta.get_field("provider")
    provider = field.get_cached_value(call, default=None)  # never a query
    if provider is not None:
        _provider_slugs[provider_id] = provider.slug
        return provider.slug
    return _provider_slugs.get(provider_id, UNKNOWN)


def _model_label(value: object) -> str:
    name = str(value or "")[:MAX_LABEL_LENGTH]
    if name in _provider_models:
        return name
    if len(_provider_models) >= MAX_PROVIDER_MODELS:
        return OTHER
    _provider_models.add(name)
    return name


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def observe_call(call: ProviderCall) -> None:
    """Count one recorded call in this process's metrics. No SQL; never raises."""
    try:
        provider = _provider_label(call)
        outcome = call.outcome if call.outcome in OUTCOMES else OTHER
        source = call.source if call.source in SOURCES else OTHER
        CALLS.labels(provider, _model_label(call.provider_model), outcome, source).inc()
        latency_ms = call.latency_ms
        if isinstance(latency_ms, int | float) and latency_ms >= 0:
            LATENCY.labels(provider, outcome).observe(latency_ms / 1000)
        ttft_ms = call.ttft_ms
        if isinstance(ttft_ms, int | float) and ttft_ms >= 0:
            TTFT.labels(provider).observe(ttft_ms / 1000)
        if tokens_in := _count(call.tokens_in):
            TOKENS.labels(provider, "in").inc(tokens_in)
        if tokens_out := _count(call.tokens_out):
            TOKENS.labels(provider, "out").inc(tokens_out)
        cost = float(call.cost or 0)
        if cost > 0 and cost != float("inf"):
            COST.labels(provider).inc(cost)
        if call.cache_hit is True:
            CACHE_HITS.labels(provider).inc()
    except Exception:  # a metrics bug must never fail the call it observes
        logger.exception("Could not observe provider call %s", getattr(call, "pk", None))

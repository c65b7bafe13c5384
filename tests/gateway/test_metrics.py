"""Prometheus metrics of provider calls: exact increments, no SQL, never an exception, and the
multiprocess mode that lets ``/metrics`` count the calls of Celery workers too."""

import json
import math
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

from apps.gateway import metrics
from apps.gateway.models import Provider, ProviderCall
from apps.gateway.pipeline import call_chat_sync

from .factories import provider

pytestmark = pytest.mark.django_db

NAMES = (
    "plm_provider_calls_total",
    "plm_provider_call_latency_seconds",
    "plm_provider_call_ttft_seconds",
    "plm_provider_tokens_total",
    "plm_provider_cost_total",
    "plm_provider_cache_hits_total",
)


class Snapshot:
    """The samples of one provider (and model, outcome, source), read before and after."""

    def __init__(self, slug: str, model: str = "echo", outcome: str = "ok", source: str = "api"):
        self.slug, self.model, self.outcome, self.source = slug, model, outcome, source
        self.before = self.read()

    def read(self) -> dict[str, float]:
        p = {"provider": self.slug}
        lat = {**p, "outcome": self.outcome}

        def get(name, labels):
            return REGISTRY.get_sample_value(name, labels) or 0.0

        return {
            "calls": get(
                "plm_provider_calls_total",
                {**p, "provider_model": self.model, "outcome": self.outcome, "source": self.source},
            ),
            "latency_count": get("plm_provider_call_latency_seconds_count", lat),
            "latency_sum": get("plm_provider_call_latency_seconds_sum", lat),
            "latency_le_5ms": get(
                "plm_provider_call_latency_seconds_bucket", {**lat, "le": "0.005"}
            ),
            "latency_le_250ms": get(
                "plm_provider_call_latency_seconds_bucket", {**lat, "le": "0.25"}
            ),
            "latency_le_120s": get(
                "plm_provider_call_latency_seconds_bucket", {**lat, "le": "120.0"}
            ),
            "ttft_count": get("plm_provider_call_ttft_seconds_count", p),
            "ttft_sum": get("plm_provider_call_ttft_seconds_sum", p),
            "tokens_in": get("plm_provider_tokens_total", {**p, "direction": "in"}),
            "tokens_out": get("plm_provider_tokens_total", {**p, "direction": "out"}),
            "cost": get("plm_provider_cost_total", p),
            "cache_hits": get("plm_provider_cache_hits_total", p),
        }

    def delta(self) -> dict[str, float]:
        after = self.read()
        return {k: round(after[k] - self.before[k], 9) for k in after}


def _call(prov: Provider, **kwargs) -> ProviderCall:
    """An unsaved call whose provider is loaded, as the pipeline hands it over."""
    fields = {
        "provider": prov,
        "provider_model": "echo",
        "attempts": 1,
        "outcome": "ok",
        "source": "api",
        "tokens_in": 0,
        "tokens_out": 0,
        "cost": Decimal(0),
        "latency_ms": 0,
    }
    fields.update(kwargs)
    return ProviderCall(**fields)


def test_a_recorded_call_moves_every_series_by_exactly_its_amounts():
    prov = Provider(slug="metrics-exact", name="Metrics", kind="builtin")
    snap = Snapshot("metrics-exact", model="gpt-x", source="gateway")
    metrics.observe_call(
        _call(
            prov,
            provider_model="gpt-x",
            source="gateway",
            tokens_in=120,
            tokens_out=45,
            cost=Decimal("0.00375"),
            latency_ms=180,
            ttft_ms=60,
        )
    )
    assert snap.delta() == {
        "calls": 1,
        "latency_count": 1,
        "latency_sum": 0.18,
        "latency_le_5ms": 0,
        "latency_le_250ms": 1,
        "latency_le_120s": 1,
        "ttft_count": 1,
        "ttft_sum": 0.06,
        "tokens_in": 120,
        "tokens_out": 45,
        "cost": 0.00375,
        "cache_hits": 0,
    }


def test_an_error_and_a_cache_hit_are_counted_under_their_labels():
    prov = Provider(slug="metrics-labels", name="Metrics", kind="builtin")
    errors = Snapshot("metrics-labels", outcome="error", source="batch")
    metrics.observe_call(_call(prov, outcome="error", source="batch", latency_ms=30_000))
    assert errors.delta()["calls"] == 1
    assert errors.delta()["latency_le_250ms"] == 0
    assert errors.delta()["latency_le_120s"] == 1
    assert errors.delta()["ttft_count"] == 0  # no first token measured
    hits = Snapshot("metrics-labels")
    metrics.observe_call(_call(prov, cache_hit=True, latency_ms=2))
    assert hits.delta()["cache_hits"] == 1
    assert hits.delta()["latency_le_5ms"] == 1


def test_a_call_through_the_pipeline_is_observed_once():
    """GIVEN the built-in provider WHEN one call goes through the pipeline THEN the metrics move
    by that call's recorded figures, exactly once."""
    prov = provider(kind="builtin", slug="metrics-pipeline")
    snap = Snapshot("metrics-pipeline")
    result = call_chat_sync(
        provider=prov,
        provider_model="echo",
        messages=[{"role": "user", "content": "hi"}],
        parameters={},
        timeout_seconds=5,
        max_retries=0,
    )
    call = ProviderCall.objects.get(pk=result.call_id)
    delta = snap.delta()
    assert delta["calls"] == 1
    assert delta["latency_count"] == 1
    assert math.isclose(delta["latency_sum"], call.latency_ms / 1000, abs_tol=1e-9)
    assert delta["tokens_in"] == call.tokens_in
    assert delta["tokens_out"] == call.tokens_out
    assert math.isclose(delta["cost"], float(call.cost), abs_tol=1e-12)


def test_observing_runs_no_sql(django_assert_num_queries):
    """The hot path: the slug comes from the loaded provider, or from the per-process map when
    the call was read back without it, never from the database."""
    prov = provider(kind="builtin", slug="metrics-nosql")
    call = ProviderCall.objects.create(provider=prov, provider_model="echo", outcome="ok")
    with django_assert_num_queries(0):
        metrics.observe_call(call)
    fresh = ProviderCall.objects.get(pk=call.pk)  # provider not loaded
    snap = Snapshot("metrics-nosql")
    with django_assert_num_queries(0):
        metrics.observe_call(fresh)
    assert snap.delta()["calls"] == 1  # labelled from the id → slug map


def test_a_provider_never_seen_is_labelled_unknown_without_a_query(django_assert_num_queries):
    prov = provider(kind="builtin", slug="metrics-unseen")
    call = ProviderCall.objects.create(provider=prov, provider_model="echo", outcome="ok")
    fresh = ProviderCall.objects.get(pk=call.pk)
    metrics._provider_slugs.pop(prov.pk, None)
    snap = Snapshot("unknown")
    with django_assert_num_queries(0):
        metrics.observe_call(fresh)
    assert snap.delta()["calls"] == 1


def test_a_call_without_provider_is_labelled_none():
    snap = Snapshot("none", model="", outcome="error")
    metrics.observe_call(ProviderCall(provider_model="", outcome="error", latency_ms=3))
    assert snap.delta()["calls"] == 1
    assert snap.delta()["latency_le_5ms"] == 1


@pytest.mark.parametrize(
    "weird",
    [
        None,
        object(),
        SimpleNamespace(provider_id=None, outcome="ok"),
        ProviderCall(outcome="??", source="??", tokens_in=-5, tokens_out=None, cost=None),
        ProviderCall(outcome="ok", latency_ms=-1, ttft_ms=-3, cost=Decimal("NaN")),
        ProviderCall(outcome="ok", latency_ms=float("nan"), cost=Decimal("sNaN")),
        ProviderCall(outcome="ok", cost="a lot"),
    ],
)
def test_observing_a_weird_call_never_raises(weird, caplog):
    metrics.observe_call(weird)  # no exception, whatever it is


def test_unknown_outcomes_and_sources_are_bounded_labels():
    metrics.observe_call(ProviderCall(outcome="??", source="fax", provider_model="m"))
    assert (
        REGISTRY.get_sample_value(
            "plm_provider_calls_total",
            {"provider": "none", "provider_model": "m", "outcome": "other", "source": "other"},
        )
        >= 1
    )


def test_provider_models_are_bounded_per_process(monkeypatch):
    monkeypatch.setattr(metrics, "_provider_models", {f"m{i}" for i in range(3)})
    monkeypatch.setattr(metrics, "MAX_PROVIDER_MODELS", 3)
    before = (
        REGISTRY.get_sample_value(
            "plm_provider_calls_total",
            {"provider": "none", "provider_model": "other", "outcome": "ok", "source": "api"},
        )
        or 0
    )
    metrics.observe_call(ProviderCall(outcome="ok", source="api", provider_model="m-new"))
    after = REGISTRY.get_sample_value(
        "plm_provider_calls_total",
        {"provider": "none", "provider_model": "other", "outcome": "ok", "source": "api"},
    )
    assert after == before + 1
    metrics.observe_call(ProviderCall(outcome="ok", source="api", provider_model="m1"))
    assert (
        REGISTRY.get_sample_value(
            "plm_provider_calls_total",
            {"provider": "none", "provider_model": "m1", "outcome": "ok", "source": "api"},
        )
        >= 1
    )


def test_the_metrics_page_exports_the_series(client):
    metrics.observe_call(
        _call(
            Provider(slug="metrics-page", name="M", kind="builtin"),
            tokens_in=1,
            tokens_out=1,
            cost=Decimal("0.5"),
            ttft_ms=5,
            cache_hit=True,
        )
    )
    response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    for name in NAMES:
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
        assert f"{name}{'_count' if 'seconds' in name else ''}{{" in text, name
    assert 'plm_provider_cost_total{provider="metrics-page"} 0.5' in text


# --- several processes -------------------------------------------------------------------------

CHILD = """
import json, sys
from decimal import Decimal
import django
django.setup()
from apps.gateway import metrics
from apps.gateway.models import Provider, ProviderCall
prov = Provider(slug="worker-provider", name="W", kind="builtin")
for i in range(3):
    metrics.observe_call(ProviderCall(
        provider=prov, provider_model="echo", outcome="ok", source="batch", tokens_in=10,
        tokens_out=4, cost=Decimal("0.25"), latency_ms=100 * (i + 1), ttft_ms=20,
    ))
from prometheus_client import values
print(json.dumps(values.ValueClass._multiprocess))
"""


def _worker_process(directory: Path) -> None:
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "DJANGO_SETTINGS_MODULE": "plmportal.settings",
    }
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) is True  # multiprocess values


def test_calls_counted_in_another_process_reach_the_metrics_page(tmp_path, client, monkeypatch):
    """GIVEN PROMETHEUS_MULTIPROC_DIR WHEN a worker process (as Celery's) observes calls THEN
    the web process's /metrics, which django-prometheus then answers from the directory with
    a MultiProcessCollector, shows them, summed."""
    _worker_process(tmp_path)
    assert list(tmp_path.glob("counter_*.db")) and list(tmp_path.glob("histogram_*.db"))

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    labels = {"provider": "worker-provider"}
    assert (
        registry.get_sample_value(
            "plm_provider_calls_total",
            {**labels, "provider_model": "echo", "outcome": "ok", "source": "batch"},
        )
        == 3
    )
    assert (
        registry.get_sample_value(
            "plm_provider_call_latency_seconds_count", {**labels, "outcome": "ok"}
        )
        == 3
    )
    assert math.isclose(
        registry.get_sample_value(
            "plm_provider_call_latency_seconds_sum", {**labels, "outcome": "ok"}
        ),
        0.6,
    )
    assert (
        registry.get_sample_value("plm_provider_tokens_total", {**labels, "direction": "in"}) == 30
    )
    assert registry.get_sample_value("plm_provider_cost_total", labels) == 0.75

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    text = client.get("/metrics").content.decode()
    assert 'plm_provider_cost_total{provider="worker-provider"} 0.75' in text

"""The call pipeline core against a real HTTP server on 127.0.0.1 speaking OpenAI's protocol."""

import logging
import time
from decimal import Decimal

import pytest

from apps.accounts.roles import PRODUCT_MANAGER
from apps.audit.models import AuditEvent
from apps.gateway.models import ProviderCall
from apps.gateway.pipeline import UpstreamFailed, call_chat_sync, call_cost
from apps.gateway.providers import builtin

from ..factories import member, release
from .factories import admin, price, provider
from .upstream import Upstream, free_port

pytestmark = pytest.mark.django_db

MESSAGES = [{"role": "user", "content": "Hello there"}]


@pytest.fixture(autouse=True)
def _fast_backoff(settings):
    settings.GATEWAY_BACKOFF_BASE_SECONDS = 0.01
    settings.GATEWAY_BACKOFF_CAP_SECONDS = 0.05
    settings.GATEWAY_RETRY_AFTER_CAP_SECONDS = 5


@pytest.fixture
def upstream():
    with Upstream() as up:
        yield up


def call(prov, **kwargs):
    kwargs.setdefault("provider_model", "gpt-test")
    kwargs.setdefault("messages", MESSAGES)
    kwargs.setdefault("parameters", {"temperature": 0})
    kwargs.setdefault("timeout_seconds", 5)
    kwargs.setdefault("max_retries", 2)
    return call_chat_sync(provider=prov, **kwargs)


def test_retries_server_errors_then_succeeds_and_records_one_call(upstream):
    """GIVEN an upstream answering 500, 500, then ok
    WHEN the pipeline calls it with two retries allowed
    THEN it succeeds on the third attempt and records exactly one ok ProviderCall."""
    prov = provider(base_url=upstream.base_url)
    upstream.script(500, 500, "ok")
    result = call(prov)
    assert result.attempts == 3
    assert result.outcome == "ok"
    assert result.errors == ["UpstreamHTTPError", "UpstreamHTTPError"]
    assert result.response["choices"][0]["message"]["content"] == "hello from upstream"
    assert len(upstream.requests) == 3
    sent = upstream.requests[0].body
    assert sent["model"] == "gpt-test"
    assert sent["messages"] == MESSAGES
    assert sent["temperature"] == 0
    assert sent["stream"] is False
    recorded = ProviderCall.objects.get()
    assert recorded.pk == result.call_id
    assert (recorded.outcome, recorded.attempts, recorded.provider) == ("ok", 3, prov)
    assert (recorded.tokens_in, recorded.tokens_out) == (10, 5)
    assert recorded.error_class == ""
    assert recorded.latency_ms >= 0


def test_a_4xx_is_not_retried_and_is_recorded_as_an_error(upstream):
    prov = provider(base_url=upstream.base_url)
    upstream.script(400)
    with pytest.raises(UpstreamFailed) as caught:
        call(prov, max_retries=3)
    assert caught.value.status == 502
    assert caught.value.result.attempts == 1
    assert len(upstream.requests) == 1
    recorded = ProviderCall.objects.get()
    assert (recorded.outcome, recorded.attempts) == ("error", 1)
    assert recorded.error_class == "UpstreamHTTPError"
    assert recorded.status_code == 400
    assert recorded.cost == 0


def test_a_429_waits_for_its_retry_after(upstream):
    """GIVEN an upstream answering 429 with Retry-After: 1, then ok
    THEN the second request arrives at least 1 s after the first."""
    prov = provider(base_url=upstream.base_url)
    upstream.script(("429", 1), "ok")
    result = call(prov)
    assert result.attempts == 2
    first, second = upstream.requests
    assert second.at - first.at >= 1.0
    assert ProviderCall.objects.get().outcome == "ok"


def test_retry_after_is_capped(upstream, settings):
    settings.GATEWAY_RETRY_AFTER_CAP_SECONDS = 0.1
    prov = provider(base_url=upstream.base_url)
    upstream.script(("429", 3600), "ok")
    result = call(prov)
    assert result.attempts == 2
    assert upstream.requests[1].at - upstream.requests[0].at < 2


def test_a_timeout_is_retried_then_recorded_after_max_retries_plus_one_attempts(upstream):
    prov = provider(base_url=upstream.base_url)
    upstream.script(("slow", 1500), ("slow", 1500), ("slow", 1500))
    with pytest.raises(UpstreamFailed) as caught:
        call(prov, timeout_seconds=0.2, max_retries=2)
    assert caught.value.code == "upstream_timeout"
    assert caught.value.status == 504
    assert caught.value.result.attempts == 3
    assert len(upstream.requests) == 3
    recorded = ProviderCall.objects.get()
    assert (recorded.outcome, recorded.attempts) == ("error", 3)
    assert recorded.error_class == "UpstreamTimeout"
    assert recorded.status_code is None


def test_connection_refused_is_retried_and_recorded():
    prov = provider(base_url=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(UpstreamFailed) as caught:
        call(prov, max_retries=1)
    assert caught.value.result.attempts == 2
    recorded = ProviderCall.objects.get()
    assert (recorded.outcome, recorded.error_class) == ("error", "UpstreamConnectionError")


def test_a_closed_connection_is_a_retryable_connection_error(upstream):
    prov = provider(base_url=upstream.base_url)
    upstream.script("close", "ok")
    result = call(prov)
    assert result.attempts == 2
    assert result.errors == ["UpstreamConnectionError"]


def test_cost_comes_from_the_price_table(upstream):
    actor = admin()
    prov = provider(actor, base_url=upstream.base_url)
    price(actor, prov, model="gpt-test", inp="2.00", out="8.00")
    upstream.script(("ok", {"prompt_tokens": 1000, "completion_tokens": 500}))
    result = call(prov)
    assert result.cost == Decimal("0.006")
    assert result.tokens == 1500
    assert ProviderCall.objects.get().cost == Decimal("0.006")


def test_a_model_without_a_price_costs_nothing(upstream):
    prov = provider(base_url=upstream.base_url)
    result = call(prov, provider_model="unpriced")
    assert result.cost == 0
    assert call_cost(None, 10, 10) == 0


def test_the_builtin_provider_answers_without_the_network():
    prov = provider(kind="builtin", slug="builtin-demo")
    result = call(prov, provider_model="builtin-echo", parameters={})
    expected = builtin.complete(MESSAGES, {"model": "builtin-echo"})
    assert result.response == expected
    assert result.attempts == 1
    assert (result.tokens_in, result.tokens_out) == (2, 3)
    recorded = ProviderCall.objects.get()
    assert (recorded.outcome, recorded.provider_model) == ("ok", "builtin-echo")


def test_a_slow_builtin_provider_times_out():
    prov = provider(kind="builtin", config={"latency_ms": 2000})
    started = time.monotonic()
    with pytest.raises(UpstreamFailed) as caught:
        call(prov, parameters={}, timeout_seconds=0.1, max_retries=0)
    assert time.monotonic() - started < 1.5  # the caller does not wait for the sleep
    assert caught.value.result.error_class == "UpstreamTimeout"


def test_the_secret_is_sent_as_bearer_and_never_logged_nor_recorded(upstream, caplog):
    canary = "sk-PIPELINE-canary-4242"
    prov = provider(base_url=upstream.base_url, secret=canary)
    upstream.script(500, 400)
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamFailed) as caught:
        call(prov)
    assert [r.headers.get("Authorization") for r in upstream.requests] == [f"Bearer {canary}"] * 2
    assert caplog.records  # the retry was logged...
    assert canary not in caplog.text  # ...without the secret
    assert canary not in str(caught.value)
    assert canary not in repr(caught.value.extra)
    recorded = ProviderCall.objects.values().get()
    assert canary not in repr(recorded)


def test_no_secret_no_authorization_header(upstream):
    prov = provider(base_url=upstream.base_url)
    call(prov)
    assert "Authorization" not in upstream.requests[0].headers


def test_a_call_records_its_release_and_model_version_and_no_audit_event(upstream):
    pm = member(PRODUCT_MANAGER)
    rel = release(pm)
    prov = provider(base_url=upstream.base_url)
    events = AuditEvent.objects.count()
    call(prov, release=rel, model_version=rel.model_version)
    recorded = ProviderCall.objects.get()
    assert recorded.release == rel
    assert recorded.model_version == rel.model_version
    assert AuditEvent.objects.count() == events


def test_retries_within_one_call_reuse_the_pooled_connection(upstream):
    """Keep-alive: the retry goes over the connection the first attempt opened."""
    prov = provider(base_url=upstream.base_url)
    upstream.script(500, "ok")
    call(prov)
    first, second = upstream.requests
    assert first.client_port == second.client_port


def test_admin_lists_calls_read_only(upstream):
    from django.test import Client

    from ..factories import UserFactory

    root = UserFactory(is_superuser=True, is_staff=True)
    call(provider(root, base_url=upstream.base_url))
    client = Client()
    client.force_login(root)
    recorded = ProviderCall.objects.get()
    assert client.get("/admin/gateway/providercall/").status_code == 200
    assert client.get(f"/admin/gateway/providercall/{recorded.pk}/change/").status_code == 200
    assert client.get("/admin/gateway/providercall/add/").status_code == 403

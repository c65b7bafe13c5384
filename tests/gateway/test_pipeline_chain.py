"""The whole pipeline: render → cache → breaker → retries → fallback chain → one record.

Against real HTTP servers on 127.0.0.1 speaking OpenAI's protocol (tests/gateway/upstream.py).
"""

import textwrap
import time
import uuid
from decimal import Decimal

import pytest

from apps.accounts.roles import PRODUCT_MANAGER
from apps.catalog import services as catalog
from apps.catalog.models import Model
from apps.core.exceptions import ApplicationError
from apps.gateway import services as gateway
from apps.gateway.breaker import CLOSED, OPEN, Breaker
from apps.gateway.models import CallSource, ProviderCall
from apps.gateway.pipeline import (
    UpstreamFailed,
    resolve_target,
    run_chat_sync,
    run_many_sync,
)
from apps.releases.services import release_create

from ..factories import artifact, member, product, prompt_with_versions
from .factories import admin, price, provider
from .test_breaker import require_redis, run_in_subprocess
from .upstream import Upstream

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_backoff(settings):
    settings.GATEWAY_BACKOFF_BASE_SECONDS = 0.01
    settings.GATEWAY_BACKOFF_CAP_SECONDS = 0.05


@pytest.fixture
def primary():
    with Upstream() as up:
        yield up


@pytest.fixture
def backup():
    with Upstream() as up:
        yield up


class World:
    """A product of a team, two OpenAI-speaking providers, and a model version on each."""

    def __init__(self, primary: Upstream, backup: Upstream, breaker_failures: int = 3):
        self.root = admin()
        self.pm = member(PRODUCT_MANAGER)
        self.team = self.pm.memberships.first().team
        self.product = product(self.pm, self.team)
        config = {"breaker_failure_threshold": breaker_failures, "breaker_cooldown_seconds": 0.5}
        self.p1 = provider(self.root, base_url=primary.base_url, config=config)
        self.p2 = provider(self.root, base_url=backup.base_url, config=config)
        price(self.root, self.p1, model="big", inp="2", out="8")
        price(self.root, self.p2, model="small", inp="1", out="1")
        model = artifact(self.pm, Model, self.team)
        self.mv1 = catalog.model_version_create(
            actor=self.pm, model=model, provider=self.p1.slug, provider_model="big",
            parameters={"temperature": 0.2},
        )  # fmt: skip
        self.mv2 = catalog.model_version_create(
            actor=self.pm, model=model, provider=self.p2.slug, provider_model="small"
        )
        self.pv = prompt_with_versions(self.pm, "You answer briefly.", team=self.team)[1][0]

    def release(self, **settings):
        settings.setdefault("fallback", [str(self.mv2.pk)])
        settings.setdefault("max_retries", 1)
        settings.setdefault("timeout_seconds", 2)
        return release_create(
            actor=self.pm,
            product=self.product,
            version=f"1.0.{uuid.uuid4().int % 10**6}",
            prompt_version=self.pv,
            model_version=self.mv1,
            settings=settings,
        )


@pytest.fixture
def world(primary, backup):
    return World(primary, backup)


def run(rel, **kwargs):
    kwargs.setdefault("variables", {"q": "What is PLM?"})
    return run_chat_sync(resolve_target(release=rel), **kwargs)


def test_a_release_renders_its_prompt_and_records_the_whole_request(world, primary):
    rel = world.release()
    result = run(rel, source=CallSource.PLAYGROUND)
    sent = primary.requests[0].body
    assert sent["model"] == "big"
    assert sent["messages"] == [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "What is PLM?"},
    ]
    assert sent["temperature"] == 0.2  # the model version's parameters
    assert result.messages == sent["messages"]
    assert result.output == "hello from upstream"
    call = ProviderCall.objects.get()
    assert call.pk == result.call_id
    assert (call.product, call.release, call.prompt_version) == (world.product, rel, world.pv)
    assert (call.model_version, call.provider) == (world.mv1, world.p1)
    assert (call.source, call.fallback_index, call.cache_hit) == ("playground", 0, False)
    # 10 tokens in at 2/M + 5 out at 8/M
    assert call.cost == Decimal("0.00006")
    assert call.ttft_ms == call.latency_ms


def test_a_deferred_record_waits_for_record_now(world, primary):
    """GIVEN defer_record (the subscribers' gateway) WHEN a call is answered THEN its row's id
    is known but nothing is queued until ``record_now`` (run once the answer is out; the
    gateway's tests find every row written)."""
    rel = world.release()
    result = run(rel, defer_record=True)
    assert result.call_id is not None and callable(result.deferred_record)
    assert not ProviderCall.objects.exists()
    # Failures are recorded at once whatever the caller asks (a 400 neither retries nor falls
    # back).
    primary.script(400)
    with pytest.raises(UpstreamFailed) as caught:
        run(rel, defer_record=True)
    assert caught.value.result.deferred_record is None
    assert ProviderCall.objects.get().outcome == "error"


def test_bad_variables_are_a_400_before_any_call(world, primary):
    rel = world.release()
    with pytest.raises(ApplicationError) as caught:
        run(rel, variables={"q": 42})
    assert caught.value.code == "invalid_variables"
    assert caught.value.status == 400
    assert primary.requests == []
    assert not ProviderCall.objects.exists()


def test_the_callers_messages_come_after_the_rendered_prompt(world, primary):
    rel = world.release()
    run(rel, messages=[{"role": "user", "content": "and more"}], parameters={"top_p": 0.5})
    sent = primary.requests[0].body
    assert [m["content"] for m in sent["messages"]][-1] == "and more"
    assert sent["top_p"] == 0.5


def test_falls_back_to_the_next_model_when_the_primary_keeps_failing(world, primary, backup):
    """GIVEN a primary answering 500 to every attempt and a healthy fallback
    THEN the fallback answers; one ProviderCall records the whole request at fallback index 1,
         with the attempts of both legs, priced by the fallback's price table."""
    rel = world.release(max_retries=1)
    primary.script(500, 500)
    result = run(rel)
    assert len(primary.requests) == 2  # one try + one retry
    assert len(backup.requests) == 1
    assert backup.requests[0].body["model"] == "small"
    assert result.attempts == 3
    assert result.errors == ["UpstreamHTTPError", "UpstreamHTTPError"]
    call = ProviderCall.objects.get()
    assert (call.outcome, call.fallback_index, call.attempts) == ("ok", 1, 3)
    assert (call.provider, call.model_version) == (world.p2, world.mv2)
    assert call.cost == Decimal("0.000015")  # 10 in + 5 out at 1/M


def test_a_400_neither_retries_nor_falls_back(world, primary, backup):
    rel = world.release(max_retries=3)
    primary.script(400)
    with pytest.raises(UpstreamFailed) as caught:
        run(rel)
    assert caught.value.status == 502
    assert len(primary.requests) == 1
    assert backup.requests == []
    call = ProviderCall.objects.get()
    assert (call.outcome, call.status_code, call.attempts) == ("error", 400, 1)


def test_when_every_leg_fails_one_error_is_recorded(world, primary, backup):
    rel = world.release(max_retries=0)
    primary.script(503)
    backup.script(502)
    with pytest.raises(UpstreamFailed) as caught:
        run(rel)
    assert caught.value.result.attempts == 2
    call = ProviderCall.objects.get()
    assert (call.outcome, call.status_code, call.fallback_index) == ("error", 502, 1)


def test_a_disabled_provider_is_skipped_for_the_fallback(world, primary, backup):
    gateway.provider_update(actor=world.root, provider=world.p1, enabled=False)
    rel = world.release()
    result = run(rel)
    assert primary.requests == []
    assert result.fallback_index == 1
    assert result.errors == ["ProviderUnavailable"]


def test_a_missing_provider_alone_is_a_503_recorded(world, primary):
    model = artifact(world.pm, Model, world.team)
    ghost = catalog.model_version_create(
        actor=world.pm, model=model, provider="no-such-provider", provider_model="x"
    )
    target = resolve_target(prompt_version=world.pv, model_version=ghost)
    with pytest.raises(UpstreamFailed) as caught:
        run_chat_sync(target, variables={"q": "hi"})
    assert caught.value.status == 503
    assert caught.value.code == "upstream_unavailable"
    call = ProviderCall.objects.get()
    assert (call.outcome, call.error_class, call.provider) == ("error", "ProviderUnavailable", None)


def test_a_prompt_and_model_version_pair_runs_without_a_release(world, primary):
    target = resolve_target(prompt_version=world.pv, model_version=world.mv1)
    result = run_chat_sync(target, variables={"q": "hi"})
    assert result.fallback_index == 0
    call = ProviderCall.objects.get()
    assert (call.release, call.product, call.prompt_version) == (None, None, world.pv)


def test_the_breaker_opens_after_n_failures_and_then_skips_the_upstream(world, primary, backup):
    """GIVEN a breaker threshold of 3 on the primary and no retries
    WHEN three requests fail on it (each answered by the fallback)
    THEN the breaker is open and the fourth request goes straight to the fallback;
         after the cool-down one probe reaches the primary again and, answered, closes it."""
    rel = world.release(max_retries=0)
    primary.script(500, 500, 500)
    for _ in range(3):
        assert run(rel).fallback_index == 1
    assert len(primary.requests) == 3
    breaker = Breaker((world.p1.slug, "big"), failure_threshold=3, cooldown_seconds=0.5)
    assert breaker.state() == OPEN

    result = run(rel)
    assert len(primary.requests) == 3  # not called
    assert result.fallback_index == 1
    assert result.errors == ["CircuitOpen"]

    time.sleep(0.6)
    probe = run(rel)
    assert len(primary.requests) == 4
    assert probe.fallback_index == 0
    assert breaker.state() == CLOSED


def test_a_breaker_opened_by_another_process_is_honoured_and_half_opens_after_cooldown(
    world, primary, settings
):
    """Across two processes (Redis): another interpreter records the failures that open the
    primary's breaker; here the pipeline skips the primary; after the cool-down the pipeline's
    probe reaches it and closes the breaker, which the other process then sees closed."""
    require_redis()
    rel = world.release()
    code = textwrap.dedent(
        f"""
        from apps.gateway.breaker import Breaker
        b = Breaker(({world.p1.slug!r}, "big"), failure_threshold=3, cooldown_seconds=0.5)
        """
    )
    out = run_in_subprocess(
        code + "for _ in range(3):\n    b.record_failure()\nprint(b.state())", settings.REDIS_URL
    )
    assert out == OPEN
    assert run(rel).fallback_index == 1
    assert primary.requests == []
    time.sleep(0.6)
    assert run(rel).fallback_index == 0
    assert len(primary.requests) == 1
    assert run_in_subprocess(code + "print(b.state())", settings.REDIS_URL) == CLOSED


def test_a_cache_hit_skips_the_upstream_and_is_recorded_as_such(world, primary):
    rel = world.release(cache={"mode": "exact", "ttl_seconds": 60})
    first = run(rel)
    second = run(rel)
    assert len(primary.requests) == 1
    assert second.response == first.response
    assert second.cache_hit and not first.cache_hit
    calls = ProviderCall.objects.order_by("created_at")
    assert [c.cache_hit for c in calls] == [False, True]
    assert calls[1].cost == 0
    assert calls[1].attempts == 0
    run(rel, variables={"q": "Something else"})  # other variables, other key
    assert len(primary.requests) == 2


def test_with_the_cache_off_every_request_goes_upstream(world, primary):
    rel = world.release()
    run(rel)
    run(rel)
    assert len(primary.requests) == 2


def test_a_failed_answer_is_not_cached(world, primary, backup):
    rel = world.release(cache={"mode": "exact", "ttl_seconds": 60}, max_retries=0, fallback=[])
    primary.script(500)
    with pytest.raises(UpstreamFailed):
        run(rel)
    run(rel)
    assert len(primary.requests) == 2


def test_run_many_bounds_concurrency_and_keeps_order(world, primary):
    primary.script(*[("slow", 150)] * 6)
    rel = world.release()
    target = resolve_target(release=rel)
    requests = [{"variables": {"q": f"q{i}"}} for i in range(5)] + [{"variables": {"q": 1}}]
    started = time.monotonic()
    results = run_many_sync(target, requests, concurrency=2)
    elapsed = time.monotonic() - started
    assert [type(r).__name__ for r in results] == ["CallResult"] * 5 + ["ApplicationError"]
    arrivals = sorted(r.at for r in primary.requests)
    assert len(arrivals) == 5
    # two at a time: the third request starts only after one of the first two answered
    assert arrivals[2] - arrivals[0] >= 0.12
    assert elapsed >= 0.4
    assert ProviderCall.objects.filter(source="batch").count() == 5


def test_release_and_pair_are_exclusive(world):
    rel = world.release()
    with pytest.raises(ApplicationError):
        resolve_target(release=rel, model_version=world.mv1)
    with pytest.raises(ApplicationError):
        resolve_target(prompt_version=world.pv)


def test_without_a_release_the_providers_timeout_and_retries_apply(world, primary):
    gateway.provider_update(actor=world.root, provider=world.p1, max_retries=0, timeout_seconds=7)
    target = resolve_target(prompt_version=world.pv, model_version=world.mv1)
    assert (target.timeout_seconds, target.max_retries) == (7, 0)
    primary.script(500, "ok")
    with pytest.raises(UpstreamFailed):
        run_chat_sync(target, variables={"q": "hi"})
    assert len(primary.requests) == 1


def test_a_success_after_a_retried_failure_resets_the_breakers_count(world, primary):
    """The hot path skips the success round trip only when no failure is counted."""
    rel = world.release(max_retries=1, fallback=[])
    primary.script(500, "ok", 500, "ok", 500, "ok")
    for _ in range(3):
        run(rel)  # each: one failure, then a success that resets the count
    breaker = Breaker((world.p1.slug, "big"), failure_threshold=3, cooldown_seconds=0.5)
    assert breaker.state() == CLOSED
    assert breaker.allow_clean() == (True, True)

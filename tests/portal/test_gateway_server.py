"""The gateway through a real uvicorn server (``plmportal.asgi:application`` on 127.0.0.1), called
with the official ``openai`` client and with raw httpx for every error case.

The servers are subprocesses sharing the test database, so these tests are transactional.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import uuid
from datetime import timedelta

import httpx
import openai
import pytest
from django.conf import settings
from django.utils import timezone
from openai import AsyncOpenAI, OpenAI

from apps.catalog import services as catalog
from apps.core.history import as_actor
from apps.gateway import http11
from apps.gateway.models import CallSource, Provider, ProviderCall
from apps.portal.models import (
    APIStatus,
    SubscriptionState,
    UsageOutcome,
    UsageRecord,
)

from ..factories import Model, artifact, product
from ..gateway.upstream import Upstream
from .factories import (
    api_key,
    gateway_setup,
    plan,
    published_api,
    released,
    subscription,
)
from .gateway_server import GatewayServer, start_many

pytestmark = pytest.mark.django_db(transaction=True)

VARS = {"q": "hi"}
REDIS = bool(settings.REDIS_URL)


@pytest.fixture(autouse=True)
def _server_writes_settle(request):
    """Before the test's database flush, let the servers' recorders write what they hold (a
    flush racing a write can deadlock on PostgreSQL)."""
    yield
    last, deadline = -1, time.monotonic() + 5
    while time.monotonic() < deadline:
        count = UsageRecord.objects.count() + ProviderCall.objects.count()
        if count == last:
            return
        last = count
        time.sleep(0.15)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker):
    with django_db_blocker.unblock():
        srv = GatewayServer().start()
    yield srv
    srv.stop()
    srv.log.unlink(missing_ok=True)


def api_on(s, provider_slug: str, provider_model: str = "m-1", **release_kwargs):
    """A published API (pinned) over a release whose model runs on ``provider_slug``, and an
    active subscription of ``s.application`` to it."""
    prod = product(s.pm)
    mv = catalog.model_version_create(
        actor=s.pm,
        model=artifact(s.pm, Model, prod.owner_team),
        provider=provider_slug,
        provider_model=provider_model,
    )
    rel = released(s.pm, prod, model_version=mv, **release_kwargs)
    api = published_api(s.pm, rel, pin=True)
    subscription(s.application, plan(s.pm, api), decided_by=s.pm)
    return api


def client(server, secret, **kwargs) -> OpenAI:
    return OpenAI(base_url=server.v1, api_key=secret, **kwargs)


def post(server, path, secret=None, body=None, *, raw=None, headers=None):
    h = dict(headers or {})
    if secret is not None:
        h["Authorization"] = f"Bearer {secret}"
    if raw is not None:
        h["Content-Type"] = "application/json"
        return httpx.post(server.base_url + path, content=raw, headers=h, timeout=10)
    return httpx.post(server.base_url + path, json=body, headers=h, timeout=10)


def chat(server, secret, slug, **extra):
    body = {"model": slug, "messages": [{"role": "user", "content": "hello"}], "variables": VARS}
    body.update(extra)
    return post(server, "/v1/chat/completions", secret, body)


def assert_error(response, status, code, type_=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["code"] == code
    if type_ is not None:
        assert error["type"] == type_
    assert error["message"]
    return error


# ---- the official client --------------------------------------------------------------------


def test_sync_client_chat_renders_the_template_first_then_the_callers_messages(server):
    """GIVEN a release whose model runs on a real OpenAI-compatible upstream
    WHEN the official client calls the gateway with variables and its own messages
    THEN the upstream received the rendered template messages followed by the caller's, and the
    answer carries the API's slug as its model."""
    s = gateway_setup(prompt_text="You are terse.")
    with Upstream() as up:
        Provider.objects.create(
            slug="up-order", name="Up", kind="openai_compatible", base_url=up.base_url
        )
        api = api_on(s, "up-order", "gpt-up", prompt_text="You are terse.")
        c = client(server, s.secret, max_retries=0)
        out = c.chat.completions.create(
            model=api.slug,
            messages=[{"role": "user", "content": "and also this"}],
            extra_body={"variables": {"q": "What is PLM?"}},
            temperature=0.2,
        )
        sent = up.requests[-1].body
        agent = up.requests[-1].header("User-Agent")
    assert agent == http11.USER_AGENT  # the gateway's calls take the lean client by default
    assert out.model == api.slug
    assert out.choices[0].message.content == "hello from upstream"
    assert out.usage.total_tokens == 15
    assert [m["content"] for m in sent["messages"]] == [
        "You are terse.",
        "What is PLM?",
        "and also this",
    ]
    assert sent["temperature"] == 0.2
    assert sent["model"] == "gpt-up"


def test_sync_client_chat_on_the_builtin_provider(server):
    s = gateway_setup()
    out = client(server, s.secret).chat.completions.create(
        model=s.api.slug,
        messages=[{"role": "user", "content": "ping"}],
        extra_body={"variables": VARS},
    )
    assert out.model == s.api.slug
    assert out.choices[0].message.content == "[builtin] ping"
    assert out.usage.prompt_tokens > 0


def test_async_client_chat(server):
    s = gateway_setup()

    async def go():
        async with AsyncOpenAI(base_url=server.v1, api_key=s.secret) as c:
            return await asyncio.gather(
                *(
                    c.chat.completions.create(
                        model=s.api.slug, messages=[], extra_body={"variables": {"q": f"n{i}"}}
                    )
                    for i in range(5)
                )
            )

    outs = asyncio.run(go())
    assert sorted(o.choices[0].message.content for o in outs) == [
        f"[builtin] n{i}" for i in range(5)
    ]


def test_streaming_with_include_usage_ends_with_the_usage_chunk(server):
    s = gateway_setup()
    chunks = list(
        client(server, s.secret).chat.completions.create(
            model=s.api.slug,
            messages=[],
            extra_body={"variables": {"q": "stream me"}},
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[builtin] stream me"
    assert all(c.model == s.api.slug for c in chunks)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 3
    assert all(c.usage is None for c in chunks[:-1])


def test_async_client_streaming(server):
    s = gateway_setup()

    async def go():
        async with AsyncOpenAI(base_url=server.v1, api_key=s.secret) as c:
            stream = await c.chat.completions.create(
                model=s.api.slug,
                messages=[],
                extra_body={"variables": {"q": "async stream"}},
                stream=True,
                stream_options={"include_usage": True},
            )
            return [chunk async for chunk in stream]

    chunks = asyncio.run(go())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[builtin] async stream"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0


def test_streaming_without_include_usage_has_no_usage_chunk(server):
    s = gateway_setup()
    chunks = list(
        client(server, s.secret).chat.completions.create(
            model=s.api.slug, messages=[], extra_body={"variables": VARS}, stream=True
        )
    )
    assert chunks and all(c.choices for c in chunks)
    assert all(getattr(c, "usage", None) is None for c in chunks)
    raw = httpx.post(
        server.v1 + "/chat/completions",
        json={"model": s.api.slug, "variables": VARS, "stream": True},
        headers={"Authorization": f"Bearer {s.secret}"},
    )
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["x-ratelimit-limit-requests"] == "600"
    assert raw.text.endswith("data: [DONE]\n\n")
    assert all(e.startswith("data: ") for e in raw.text.strip().split("\n\n"))


def test_models_list_shows_the_apis_the_key_may_call(server):
    s = gateway_setup()
    other = published_api(s.pm)  # subscribed, but pending
    subscription(s.application, plan(s.pm, other), state=SubscriptionState.PENDING)
    deprecated = published_api(s.pm, status=APIStatus.DEPRECATED)
    subscription(s.application, plan(s.pm, deprecated), decided_by=s.pm)
    draft = published_api(s.pm, status=APIStatus.DRAFT)
    subscription(s.application, plan(s.pm, draft), decided_by=s.pm)
    published_api(s.pm)  # not subscribed
    ids = sorted(m.id for m in client(server, s.secret).models.list())
    assert ids == sorted([s.api.slug, deprecated.slug])
    one = client(server, s.secret).models.retrieve(s.api.slug)
    assert one.id == s.api.slug


def test_invoke_returns_output_and_usage(server):
    s = gateway_setup()
    r = post(server, f"/v1/apis/{s.api.slug}/invoke", s.secret, {"variables": {"q": "hi there"}})
    assert r.status_code == 200, r.text
    assert r.json()["output"] == "[builtin] hi there"
    usage = r.json()["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    assert r.headers["x-ratelimit-remaining-requests"] == "599"


# ---- errors ---------------------------------------------------------------------------------


def test_401_for_missing_malformed_unknown_expired_revoked_and_past_grace_keys(server):
    s = gateway_setup()
    assert_error(chat(server, None, s.api.slug), 401, "invalid_api_key", "invalid_request_error")
    r = post(
        server,
        "/v1/chat/completions",
        body={"model": s.api.slug},
        headers={"Authorization": "Basic abc"},
    )
    assert_error(r, 401, "invalid_api_key")
    assert_error(chat(server, "not-a-portal-key", s.api.slug), 401, "invalid_api_key")
    unknown = s.secret[:18] + ("A" if s.secret[18] != "A" else "B") + s.secret[19:]
    error = assert_error(chat(server, unknown, s.api.slug), 401, "invalid_api_key")
    assert unknown not in error["message"]

    expired, expired_secret = api_key(s.application, name="expired")
    expired.expires_at = timezone.now() - timedelta(seconds=1)
    as_actor(expired, s.developer).save()
    assert "expired" in assert_error(chat(server, expired_secret, s.api.slug), 401,
                                     "invalid_api_key")["message"]  # fmt: skip

    rotated, rotated_secret = api_key(s.application, name="rotated")
    rotated.grace_ends_at = timezone.now() - timedelta(seconds=1)
    as_actor(rotated, s.developer).save()
    assert "grace" in assert_error(chat(server, rotated_secret, s.api.slug), 401,
                                   "invalid_api_key")["message"]  # fmt: skip

    in_grace, in_grace_secret = api_key(s.application, name="in grace")
    in_grace.grace_ends_at = timezone.now() + timedelta(hours=1)
    as_actor(in_grace, s.developer).save()
    assert chat(server, in_grace_secret, s.api.slug).status_code == 200


def test_revocation_takes_effect_on_the_next_request_of_the_running_server(server):
    """GIVEN a key the running server has cached (it answered with it)
    WHEN another process (this test) revokes it: a model save, committed, with on_commit
    THEN the server refuses the very next call with 401."""
    s = gateway_setup()
    assert chat(server, s.secret, s.api.slug).status_code == 200
    assert chat(server, s.secret, s.api.slug).status_code == 200
    s.key.revoked_at = timezone.now()
    as_actor(s.key, s.developer).save()
    error = assert_error(chat(server, s.secret, s.api.slug), 401, "invalid_api_key")
    assert "revoked" in error["message"]
    # and a subscription suspended elsewhere: 403 on the next call
    s2 = gateway_setup()
    assert chat(server, s2.secret, s2.api.slug).status_code == 200
    s2.subscription.state = SubscriptionState.SUSPENDED
    as_actor(s2.subscription, s2.pm).save()
    assert_error(chat(server, s2.secret, s2.api.slug), 403, "permission_denied")


def test_revocation_reaches_a_server_on_the_database_limiter(django_db_setup, django_db_blocker):
    """GIVEN a server whose limiter is the database one (its replies carry no generation; with
    REDIS_URL set the generation still lives in Redis) WHEN another process revokes a key the
    server has cached THEN the next call is refused."""
    with django_db_blocker.unblock():
        srv = GatewayServer(limiter="db").start()
    try:
        s = gateway_setup()
        assert chat(srv, s.secret, s.api.slug).status_code == 200
        assert chat(srv, s.secret, s.api.slug).status_code == 200
        s.key.revoked_at = timezone.now()
        as_actor(s.key, s.developer).save()
        assert_error(chat(srv, s.secret, s.api.slug), 401, "invalid_api_key")
    finally:
        srv.stop()
        srv.log.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "state",
    [
        SubscriptionState.PENDING,
        SubscriptionState.SUSPENDED,
        SubscriptionState.REJECTED,
        SubscriptionState.CANCELLED,
    ],
)
def test_403_without_an_active_subscription(server, state):
    s = gateway_setup()
    other = published_api(s.pm)
    subscription(s.application, plan(s.pm, other), state=state)
    error = assert_error(chat(server, s.secret, other.slug), 403, "permission_denied")
    assert error["type"] == "permission_denied"
    assert state in error["message"] or "approval" in error["message"]
    unsubscribed = published_api(s.pm)
    assert_error(chat(server, s.secret, unsubscribed.slug), 403, "permission_denied")


def test_404_for_unknown_and_draft_apis_and_unknown_paths(server):
    s = gateway_setup()
    assert_error(chat(server, s.secret, "no-such-api"), 404, "model_not_found")
    draft = published_api(s.pm, status=APIStatus.DRAFT)
    subscription(s.application, plan(s.pm, draft), decided_by=s.pm)
    assert_error(chat(server, s.secret, draft.slug), 404, "model_not_found")
    r = post(server, "/v1/apis/no-such-api/invoke", s.secret, {"variables": VARS})
    assert_error(r, 404, "model_not_found")
    assert_error(post(server, "/v1/nothing", s.secret, {}), 404, "unknown_url")


def test_410_for_retired_and_past_sunset_apis_and_deprecation_headers(server):
    s = gateway_setup()
    retired = published_api(s.pm, status=APIStatus.RETIRED)
    subscription(s.application, plan(s.pm, retired), decided_by=s.pm)
    assert_error(chat(server, s.secret, retired.slug), 410, "model_retired")

    sunset = published_api(s.pm, status=APIStatus.DEPRECATED)
    sunset.deprecated_at = timezone.now() - timedelta(days=30)
    sunset.sunset_at = timezone.now() - timedelta(seconds=1)
    as_actor(sunset, s.pm).save()
    subscription(s.application, plan(s.pm, sunset), decided_by=s.pm)
    assert_error(chat(server, s.secret, sunset.slug), 410, "model_retired")

    deprecated = published_api(s.pm, status=APIStatus.DEPRECATED)
    deprecated.deprecated_at = timezone.now().replace(microsecond=0) - timedelta(days=1)
    deprecated.sunset_at = timezone.now().replace(microsecond=0) + timedelta(days=30)
    as_actor(deprecated, s.pm).save()
    subscription(s.application, plan(s.pm, deprecated), decided_by=s.pm)
    r = chat(server, s.secret, deprecated.slug)
    assert r.status_code == 200, r.text
    assert r.headers["deprecation"] == f"@{int(deprecated.deprecated_at.timestamp())}"
    assert email.utils.parsedate_to_datetime(r.headers["sunset"]) == deprecated.sunset_at
    assert "deprecation" not in chat(server, s.secret, s.api.slug).headers


def test_400_for_bad_json_bad_body_and_bad_variables(server):
    s = gateway_setup()
    assert_error(post(server, "/v1/chat/completions", s.secret, raw=b"{nope"), 400,
                 "invalid_json")  # fmt: skip
    assert_error(post(server, "/v1/chat/completions", s.secret, raw=b"[1]"), 400, "invalid_json")
    assert_error(post(server, "/v1/chat/completions", s.secret, {"messages": []}), 400,
                 "invalid_request")  # fmt: skip
    error = assert_error(chat(server, s.secret, s.api.slug, messages="hi"), 400, "invalid_request")
    assert error["param"] == "messages"
    assert_error(chat(server, s.secret, s.api.slug, messages=[{"content": "x"}]), 400,
                 "invalid_request")  # fmt: skip
    error = assert_error(chat(server, s.secret, s.api.slug, variables={}), 400,
                         "invalid_variables", "invalid_request_error")  # fmt: skip
    assert "'q' is a required property" in error["message"]
    assert_error(chat(server, s.secret, s.api.slug, variables=[1]), 400, "invalid_variables")
    r = post(server, f"/v1/apis/{s.api.slug}/invoke", s.secret, {"variables": {"q": 3}})
    assert_error(r, 400, "invalid_variables")
    r = post(server, f"/v1/apis/{s.api.slug}/invoke", s.secret, raw=b"\xff\xfe")
    assert_error(r, 400, "invalid_json")
    # the openai client sees a BadRequestError
    with pytest.raises(openai.BadRequestError):
        client(server, s.secret, max_retries=0).chat.completions.create(
            model=s.api.slug, messages=[], extra_body={"variables": {}}
        )


def test_413_for_a_body_past_the_limit(server):
    s = gateway_setup()
    body = b'{"model": "%s", "messages": [], "pad": "' % s.api.slug.encode()
    body += b"x" * (4 * 1024 * 1024 + 1) + b'"}'
    assert_error(post(server, "/v1/chat/completions", s.secret, raw=body), 413, "request_too_large")


def test_503_when_a_following_api_has_no_release_to_serve(server):
    """GIVEN an API that follows its product's release WHEN the product has no released release
    any more THEN the call is a 503 no_release in OpenAI's shape (not a 500)."""
    s = gateway_setup()
    assert chat(server, s.secret, s.api.slug).status_code == 200
    current = s.api.product.releases.get(status="released")
    current.status = "deprecated"
    as_actor(current, s.pm).save()
    assert_error(chat(server, s.secret, s.api.slug), 503, "no_release", "api_error")


def test_a_following_api_serves_the_new_release_at_once_and_a_pinned_one_its_pin(server):
    """GIVEN two APIs over release 1.0.0 of a product on a real upstream, one following the
    product's release and one pinned to 1.0.0, both called (so the server has cached them)
    WHEN release 2.0.0, with another prompt, is released THEN the next call through the
    follower sends the new prompt and the pinned one still sends the old."""
    s = gateway_setup()
    with Upstream() as up:
        Provider.objects.create(
            slug="up-follow", name="Up", kind="openai_compatible", base_url=up.base_url
        )
        prod = product(s.pm)
        mv = catalog.model_version_create(
            actor=s.pm,
            model=artifact(s.pm, Model, prod.owner_team),
            provider="up-follow",
            provider_model="m-1",
        )
        one = released(s.pm, prod, model_version=mv, prompt_text="Release one.")
        follower = published_api(s.pm, one)
        pinned = published_api(s.pm, one, pin=True)
        for api in (follower, pinned):
            subscription(s.application, plan(s.pm, api), decided_by=s.pm)

        def system_prompt_sent(api) -> str:
            assert chat(server, s.secret, api.slug).status_code == 200
            return up.requests[-1].body["messages"][0]["content"]

        assert system_prompt_sent(follower) == "Release one."
        assert system_prompt_sent(pinned) == "Release one."
        released(s.pm, prod, version="2.0.0", model_version=mv, prompt_text="Release two.")
        assert system_prompt_sent(follower) == "Release two."
        assert system_prompt_sent(pinned) == "Release one."


def test_405_in_the_error_shape(server):
    s = gateway_setup()
    r = httpx.get(server.v1 + "/chat/completions", headers={"Authorization": f"Bearer {s.secret}"})
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    assert_error(post(server, "/v1/models", s.secret, {}), 405, "method_not_allowed")
    r = httpx.get(server.v1 + f"/apis/{s.api.slug}/invoke")
    assert_error(r, 405, "method_not_allowed")


def test_429_past_the_plans_requests_per_minute_with_headers(server):
    s = gateway_setup(rpm=3)
    oks = [chat(server, s.secret, s.api.slug) for _ in range(3)]
    assert [r.status_code for r in oks] == [200, 200, 200]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in oks] == ["2", "1", "0"]
    r = chat(server, s.secret, s.api.slug)
    error = assert_error(r, 429, "rate_limit_exceeded")
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-ratelimit-limit-requests"] == "3"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.headers["x-ratelimit-reset-requests"].endswith("s")
    assert "3 requests per minute" in error["message"]
    with pytest.raises(openai.RateLimitError):
        client(server, s.secret, max_retries=0).chat.completions.create(
            model=s.api.slug, messages=[], extra_body={"variables": VARS}
        )


def test_429_insufficient_quota_past_the_monthly_tokens(server):
    s = gateway_setup(tokens=10)
    first = chat(server, s.secret, s.api.slug)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-tokens"] == "10"
    assert first.headers["x-ratelimit-remaining-tokens"] == "10"
    spent = first.json()["usage"]["total_tokens"]
    for _ in range(20):
        r = chat(server, s.secret, s.api.slug)
        if r.status_code == 429:
            break
        spent += r.json()["usage"]["total_tokens"]
    error = assert_error(r, 429, "insufficient_quota", "insufficient_quota")
    assert spent >= 10
    assert r.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["x-ratelimit-reset-tokens"]
    assert "10 tokens" in error["message"]


def test_502_when_the_upstream_fails(server):
    s = gateway_setup()
    failing = f"fails-{uuid.uuid4().hex[:8]}"  # a fresh circuit breaker (its state outlives runs)
    Provider.objects.create(
        slug=failing, name="Fails", kind="builtin", config={"failure_rate": 1.0}
    )
    api = api_on(s, failing, settings={"max_retries": 0})
    error = assert_error(chat(server, s.secret, api.slug), 502, "upstream_error", "api_error")
    assert "attempt" in error["message"]
    r = post(server, f"/v1/apis/{api.slug}/invoke", s.secret, {"variables": VARS})
    assert_error(r, 502, "upstream_error")
    r = chat(server, s.secret, api.slug, stream=True)
    assert_error(r, 502, "upstream_error")
    with pytest.raises(openai.InternalServerError):
        client(server, s.secret, max_retries=0).chat.completions.create(
            model=api.slug, messages=[], extra_body={"variables": VARS}
        )


# ---- rate limits across processes -----------------------------------------------------------


def burst(servers, secret, slug, per_server: int) -> list[int]:
    """``per_server`` concurrent requests to each server at once; their statuses."""

    async def go():
        async with httpx.AsyncClient(
            timeout=30, limits=httpx.Limits(max_connections=per_server * len(servers))
        ) as c:
            body = {"model": slug, "messages": [], "variables": VARS}
            h = {"Authorization": f"Bearer {secret}"}
            return await asyncio.gather(
                *(
                    c.post(srv.v1 + "/chat/completions", json=body, headers=h)
                    for srv in servers
                    for _ in range(per_server)
                )
            )

    return [r.status_code for r in asyncio.run(go())]


@pytest.mark.parametrize("limiter", ["db", "redis"])
def test_a_burst_from_three_processes_gets_exactly_the_plans_requests(limiter):
    """GIVEN a plan of 10 requests per minute and three gateway processes
    WHEN 3 x 15 requests arrive at once (15 concurrent per process)
    THEN exactly 10 succeed and the 35 others are 429, whichever process they hit."""
    if limiter == "redis" and not REDIS:
        pytest.skip("REDIS_URL is not set: the Redis limiter runs in CI, where it is")
    s = gateway_setup(rpm=10)
    servers = start_many(3, limiter=limiter)
    try:
        statuses = burst(servers, s.secret, s.api.slug, 15)
    finally:
        for srv in servers:
            srv.stop()
            srv.log.unlink(missing_ok=True)
    assert statuses.count(200) == 10, statuses
    assert statuses.count(429) == 35, statuses
    limited = UsageRecord.objects.filter(subscription=s.subscription)
    assert limited.filter(outcome=UsageOutcome.RATE_LIMITED).count() == 35
    assert limited.filter(outcome=UsageOutcome.OK).count() == 10


# ---- usage: none lost -----------------------------------------------------------------------


def test_usage_of_every_call_through_two_workers_is_written_by_the_graceful_shutdown():
    """GIVEN two uvicorn processes
    WHEN 120 calls go through them (chat, streamed chat and invoke) and both get SIGTERM
    THEN exactly 120 UsageRecord rows and 120 gateway ProviderCall rows exist, linked."""
    s = gateway_setup(rpm=10_000)
    servers = start_many(2)
    try:

        async def go():
            async with httpx.AsyncClient(timeout=30) as c:
                h = {"Authorization": f"Bearer {s.secret}"}
                gate = asyncio.Semaphore(16)

                async def one(i):
                    srv = servers[i % 2]
                    async with gate:
                        if i % 3 == 0:
                            return await c.post(srv.v1 + f"/apis/{s.api.slug}/invoke",
                                                json={"variables": VARS}, headers=h)  # fmt: skip
                        body = {"model": s.api.slug, "variables": VARS, "stream": i % 3 == 1}
                        return await c.post(srv.v1 + "/chat/completions", json=body, headers=h)

                return await asyncio.gather(*(one(i) for i in range(120)))

        responses = asyncio.run(go())
        assert [r.status_code for r in responses] == [200] * 120
    finally:
        codes = [srv.stop() for srv in servers]
    # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is done
    assert set(codes) <= {0, -15}, codes
    assert all("Traceback" not in srv.output() for srv in servers)
    for srv in servers:
        srv.log.unlink(missing_ok=True)
    records = UsageRecord.objects.filter(subscription=s.subscription)
    assert records.count() == 120
    assert records.filter(outcome=UsageOutcome.OK, status_code=200).count() == 120
    assert records.filter(streamed=True).count() == 40
    calls = ProviderCall.objects.filter(
        source=CallSource.GATEWAY, release=s.api.product.releases.get()
    )
    assert calls.count() == 120
    assert set(records.values_list("provider_call_id", flat=True)) == set(
        calls.values_list("id", flat=True)
    )
    s.key.refresh_from_db()
    assert s.key.last_used_at is not None


def test_the_usage_records_of_refusals_and_failures(server):
    s = gateway_setup(rpm=2)
    chat(server, s.secret, s.api.slug)
    chat(server, s.secret, s.api.slug, variables={})
    chat(server, s.secret, s.api.slug)
    # the server writes in batches: wait for the rows
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if UsageRecord.objects.filter(subscription=s.subscription).count() == 3:
            break
        time.sleep(0.05)
    rows = {r.outcome: r for r in UsageRecord.objects.filter(subscription=s.subscription)}
    assert set(rows) == {UsageOutcome.OK, UsageOutcome.REJECTED, UsageOutcome.RATE_LIMITED}
    assert rows[UsageOutcome.REJECTED].error_code == "invalid_variables"
    assert rows[UsageOutcome.REJECTED].status_code == 400
    assert rows[UsageOutcome.RATE_LIMITED].status_code == 429
    assert rows[UsageOutcome.RATE_LIMITED].provider_call_id is None
    ok = rows[UsageOutcome.OK]
    assert ok.provider_call_id is not None and ok.tokens_out > 0
    assert ok.release_id == s.api.product.releases.get().pk
    assert ok.key_id == s.key.pk

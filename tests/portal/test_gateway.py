"""The gateway app in process (ASGI calls, no server): its hot path runs no SQL, its snapshot
follows changes, it costs less than a Django view, and its lifespan writes pending rows.

The server-level behaviour (the official client, every error, limits across processes, usage
through graceful shutdowns) is in ``test_gateway_server.py``.
"""

from __future__ import annotations

import calendar
import time

import httpx
import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connection
from django.utils import timezone

from apps.core.history import as_actor
from apps.gateway import recorder
from apps.gateway.models import CallSource, ProviderCall
from apps.portal import invalidation
from apps.portal.gateway import limiter as limits
from apps.portal.gateway.app import GatewayApp
from apps.portal.models import APIKey, LimitCounter, UsageRecord

from .factories import gateway_setup

pytestmark = pytest.mark.django_db

REDIS = bool(settings.REDIS_URL)
BODY = {"messages": [{"role": "user", "content": "x"}], "variables": {"q": "hi"}}


@pytest.fixture(params=["db", "redis"])
def limiter(request, settings):
    if request.param == "redis" and not REDIS:
        pytest.skip("REDIS_URL is not set: the Redis limiter runs in CI, where it is")
    settings.GATEWAY_LIMITER = request.param
    return request.param


def run(app: GatewayApp, scenario):
    """Run ``scenario(client)`` on one event loop, then close the app (writes pending rows)."""

    async def go():
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                return await scenario(c)
        finally:
            await app.aclose()

    return async_to_sync(go)()


def chat(c, s, **extra):
    return c.post(
        "/v1/chat/completions",
        json={"model": s.api.slug, **BODY, **extra},
        headers={"Authorization": f"Bearer {s.secret}"},
    )


def test_a_steady_state_call_runs_no_sql_for_keys_subscriptions_plans_or_releases(limiter):
    """GIVEN a warm gateway (one call made)
    WHEN the next calls run (chat, streamed chat, invoke, models)
    THEN they run no SQL at all with the Redis limiter, and only the limiter's own counter
    statements with the database limiter (the usage rows are written later, off the path)."""
    s = gateway_setup()
    app = GatewayApp()
    assert app.limiter.name == limiter
    captured: list[str] = []
    capturing = [False]

    def collect(execute, sql, params, many, context):
        if capturing[0]:
            captured.append(sql)
        return execute(sql, params, many, context)

    async def scenario(c):
        assert (await chat(c, s)).status_code == 200  # warm: loads the snapshot
        await recorder.flush()
        capturing[0] = True
        try:
            responses = [
                await chat(c, s),
                await chat(c, s, stream=True),
                await c.post(
                    f"/v1/apis/{s.api.slug}/invoke",
                    json={"variables": {"q": "hi"}},
                    headers={"Authorization": f"Bearer {s.secret}"},
                ),
                await c.get("/v1/models", headers={"Authorization": f"Bearer {s.secret}"}),
            ]
        finally:
            capturing[0] = False
        return [r.status_code for r in responses]

    with connection.execute_wrapper(collect):  # every query of this thread's connection
        assert run(app, scenario) == [200, 200, 200, 200]
    writes = [q for q in captured if "usagerecord" in q or "providercall" in q]
    lookups = [q for q in captured if q not in writes]
    if limiter == "redis":
        assert lookups == []
    else:
        assert lookups, "the database limiter takes its allowance with SQL"
        assert all(LimitCounter._meta.db_table in q for q in lookups), lookups
    # whatever was written in the window is the recorder's batch, never a read
    assert not any(q.lstrip().upper().startswith("SELECT") for q in writes)
    assert (
        UsageRecord.objects.filter(subscription=s.subscription).count() == 4
    )  # warm-up + chat, stream, invoke


def test_a_committed_change_bumps_the_generation_and_the_next_call_sees_it(
    django_capture_on_commit_callbacks,
):
    """GIVEN a warm gateway that answered with a key
    WHEN the key is revoked (a model save; the bump runs on commit)
    THEN the next call is refused (401) although the snapshot had the key cached;
    a change that is rolled back bumps nothing."""
    s = gateway_setup()
    app = GatewayApp()
    before = invalidation.local_generation

    async def first(c):
        return (await chat(c, s)).status_code

    assert run(app, first) == 200
    with django_capture_on_commit_callbacks(execute=True):
        s.key.revoked_at = timezone.now()
        as_actor(s.key, s.developer).save()
    assert invalidation.local_generation > before

    async def second(c):
        r = await chat(c, s)
        return r.status_code, r.json()["error"]["code"]

    assert run(app, second) == (401, "invalid_api_key")

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        s.subscription.decision_reason = "x"
        as_actor(s.subscription, s.pm).save()
    assert callbacks  # queued for commit, not run: a rollback would drop them
    assert callbacks[0] is invalidation.bump or callbacks[0].__name__ == "bump"


def test_expiry_is_checked_against_the_clock_from_the_cached_facts():
    s = gateway_setup()
    app = GatewayApp()

    async def scenario(c):
        ok = (await chat(c, s)).status_code
        # the cached facts say when the key ends; no reload is needed to refuse it
        digest = next(iter(app.snapshot.keys))
        facts = app.snapshot.keys[digest]
        app.snapshot.keys[digest] = type(facts)(
            facts.id, facts.application_id, facts.prefix, time.time() - 1, None, None
        )
        later = await chat(c, s)
        return ok, later.status_code, later.json()["error"]["message"]

    ok, status, message = run(app, scenario)
    assert (ok, status) == (200, 401)
    assert "expired" in message


def test_the_gateway_costs_less_than_a_django_view():
    """A cached GET /v1/models through the gateway app against Django's simplest view
    (/healthz) through Django's ASGI handler, in the same process: the gateway is faster."""
    from plmportal.asgi import django_application

    s = gateway_setup()
    gateway = GatewayApp()
    n = 200

    async def timed(app, path, headers):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as c:
            for _ in range(20):
                assert (await c.get(path, headers=headers)).status_code == 200
            t0 = time.perf_counter()
            for _ in range(n):
                await c.get(path, headers=headers)
            return (time.perf_counter() - t0) / n

    async def scenario(_):
        auth = {"Authorization": f"Bearer {s.secret}"}
        g = await timed(gateway, "/v1/models", auth)
        d = await timed(django_application, "/healthz", {})
        return g, d

    g, d = run(gateway, scenario)
    assert g < d, f"gateway /v1/models {g * 1e6:.0f} µs, Django /healthz {d * 1e6:.0f} µs"


def test_lifespan_shutdown_writes_pending_usage_and_call_rows():
    s = gateway_setup()
    app = GatewayApp()

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            for _ in range(3):
                assert (await chat(c, s)).status_code == 200
        messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent = []

        async def receive():
            return messages.pop(0)

        async def send(message):
            sent.append(message["type"])

        await app({"type": "lifespan"}, receive, send)
        return sent

    assert async_to_sync(scenario)() == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert UsageRecord.objects.filter(subscription=s.subscription).count() == 3
    assert ProviderCall.objects.filter(source=CallSource.GATEWAY).count() == 3
    s.key.refresh_from_db()
    assert s.key.last_used_at is not None


def test_the_recorder_writes_rows_of_several_models_and_touches_in_one_flush():
    s = gateway_setup()
    from apps.portal.gateway import usage

    async def scenario():
        row = usage.record(
            key_id=s.key.pk,
            application_id=s.application.pk,
            subscription_id=s.subscription.pk,
            api_id=s.api.pk,
            release_id=None,
            endpoint="chat",
            streamed=False,
            status_code=429,
        )
        found = recorder.recorder()
        assert found.pending == [row]
        assert (APIKey, s.key.pk) in found.touches
        await recorder.aclose()
        return row

    row = async_to_sync(scenario)()
    saved = UsageRecord.objects.get(pk=row.pk)
    assert saved.outcome == "rate_limited"
    assert APIKey.objects.get(pk=s.key.pk).last_used_at == row.created_at


def test_the_database_limiter_is_a_fixed_window_per_minute_and_a_monthly_counter():
    sub = "00000000-0000-0000-0000-000000000001"
    got = [limits.db_take(sub, 3, None) for _ in range(4)]
    assert [d.allowed for d in got] == [True, True, True, False]
    assert [d.remaining_requests for d in got] == [2, 1, 0, 0]
    assert got[-1].reason == "requests" and got[-1].retry_after > 0
    # an old window rolls over with one conditional UPDATE
    LimitCounter.objects.filter(key=f"rpm:{sub}").update(window=1)
    assert limits.db_take(sub, 3, None).remaining_requests == 2
    limits.db_add_tokens(sub, 7)
    limits.db_add_tokens(sub, 5)
    d = limits.db_take(sub, 100, 10)
    assert (d.allowed, d.reason, d.remaining_tokens) == (False, "tokens", -2)
    assert ("x-ratelimit-remaining-tokens", "0") in [
        (k.decode(), v.decode()) for k, v in d.headers()
    ]


def test_durations_in_openais_reset_format():
    assert limits.duration(0.02) == "20ms"
    assert limits.duration(1.5) == "1.5s"
    assert limits.duration(360) == "6m0s"
    assert limits.duration(3 * 3600 + 121) == "3h2m1s"
    month, left = limits.month_window(calendar.timegm((2025, 12, 31, 23, 0, 0)))
    assert month == 202512 and 0 < left <= 25 * 3600


def test_a_response_leaves_in_one_write_under_uvicorns_httptools_protocol():
    """GIVEN uvicorn's own httptools request cycle over a transport that records its writes
    WHEN the gateway responds THEN the status line, headers and body are one write, and the
    cycle counts the response complete (keep-alive goes on)."""
    import asyncio
    import logging

    from uvicorn.protocols.http.flow_control import FlowControl
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from apps.portal.gateway.app import respond

    class Transport:
        def __init__(self):
            self.writes = []

        def write(self, data):
            if data:  # an empty write sends nothing
                self.writes.append(data)

        def is_closing(self):
            return False

        def pause_reading(self):
            pass

        def resume_reading(self):
            pass

    async def go():
        transport = Transport()
        done = []
        cycle = RequestResponseCycle(
            scope={"type": "http", "method": "POST", "http_version": "1.1", "headers": []},
            transport=transport,
            flow=FlowControl(transport),
            logger=logging.getLogger("test"),
            access_logger=logging.getLogger("test.access"),
            access_log=False,
            default_headers=[],
            message_event=asyncio.Event(),
            expect_100_continue=False,
            keep_alive=True,
            on_response=lambda: done.append(True),
        )
        await respond(cycle.send, 200, b'{"ok": true}', [(b"x-test", b"1")])
        return transport, cycle, done

    transport, cycle, done = asyncio.run(go())
    assert len(transport.writes) == 1, transport.writes
    (written,) = transport.writes
    assert written.startswith(b"HTTP/1.1 200 OK\r\n") and written.endswith(b'\r\n\r\n{"ok": true}')
    assert b"content-length: 12\r\n" in written and b"x-test: 1\r\n" in written
    assert cycle.response_complete and done == [True]

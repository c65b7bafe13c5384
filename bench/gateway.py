"""The subscriber gateway's added latency: uvicorn serving ``plmportal.asgi:application`` in front
of a local upstream, against direct calls to the same upstream in the same run.

Starts the OpenAI-speaking upstream of bench/upstream_app.py (fixed latency, its own process),
seeds a throw-away database (the test database of DATABASE_URL, or a SQLite file) with a
released release on that upstream, a published API, a plan, an application with an active
subscription and an API key, then starts the real gateway (``uvicorn plmportal.asgi:application``
on 127.0.0.1, one process, its own database connection, Redis when REDIS_URL is set) and
measures with ``httpx.AsyncClient`` (keep-alive on both sides):

- one request at a time, in ``--rounds`` rounds (the quietest counts: a shared machine only
  ever adds time): ``--sequential`` interleaved pairs, each a direct POST to the upstream and a
  ``POST /v1/chat/completions`` through the gateway (bearer key → snapshot → rate limit → render
  → breaker → upstream → response, usage and ProviderCall rows written in the background);
  prints p50 and p99 of the per-pair difference and of both distributions;
- ``--width`` requests in flight (64 by default, the saturation of one process on this machine):
  latency quantiles, requests per second and error counts for each side;
- the thin app against Django's request cycle on the same server: ``GET /v1/models`` (key and
  snapshot lookups) against Django's simplest view, ``GET /healthz``.

At the end the server is stopped with SIGTERM (its lifespan writes the pending rows) and the
UsageRecord and ProviderCall rows are counted: one each per gateway call.

Goal on this machine, one request at a time: p50 <= 2 ms and p99 <= 5 ms added; no errors.

    .venv/bin/python bench/gateway.py [--latency-ms 20] [--sequential 300] [--concurrent 1280]

Profiling the server process (CPU, not wall clock): ``--cprofile OUT`` runs uvicorn under
cProfile (stats dumped at shutdown; read with ``pstats``); ``--py-spy OUT`` attaches py-spy
(``PY_SPY`` = its path; not a project dependency) and writes collapsed stacks per thread.
``--sequential-only`` skips the other phases; ``--concurrent 0`` skips the saturation phase;
``--loop`` / ``--http`` pass uvicorn's (``auto``: uvloop and httptools, both installed).
"""

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plmportal.settings")
os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")

import django

django.setup()

import httpx
from django.db import connection
from django.utils import timezone

from apps.accounts import services as accounts
from apps.catalog import services as catalog
from apps.catalog.models import Model, PromptTemplate
from apps.core.history import as_actor
from apps.gateway import http
from apps.gateway import services as gateway
from apps.gateway.models import CallSource, ProviderCall
from apps.portal.keys import key_generate, key_hash
from apps.portal.models import (
    APIKey,
    APIStatus,
    Application,
    Plan,
    PublishedAPI,
    Subscription,
    UsageRecord,
)
from apps.releases.services import release_create, release_freeze, release_release

sys.path.insert(0, str(ROOT / "bench"))
from pipeline import (
    MESSAGES,
    RENDERED,
    SCHEMA,
    VARIABLES,
    free_port,
    line,
    pct,
    start_upstream,
    timed,
)

SLUG = "bench-api"


def seed(base_url: str) -> str:
    """The database state of one subscriber; returns the API key."""
    team = accounts.team_create(actor=None, slug="bench", name="Bench")
    root = accounts.user_create(actor=None, username="bench-admin", password="bench-pass-9876")
    root.is_superuser = True
    root.save(update_fields=["is_superuser"])
    pm = accounts.user_create(actor=None, username="bench-pm", password="bench-pass-9876")
    accounts.membership_add(actor=None, user=pm, team=team, role="product_manager")
    dev = accounts.user_create(actor=None, username="bench-dev", password="bench-pass-9876")
    accounts.membership_add(actor=None, user=dev, team=team, role="developer")
    pm = type(pm).objects.get(pk=pm.pk)
    prov = gateway.provider_create(
        actor=root,
        slug="bench-upstream",
        name="Bench upstream",
        kind="openai_compatible",
        base_url=base_url,
        secret="sk-bench-not-a-real-key",
    )
    gateway.provider_price_set(
        actor=root,
        provider=prov,
        provider_model="bench-model",
        input_per_million=1,
        output_per_million=2,
    )
    product = catalog.product_create(actor=pm, owner_team=team, slug="bench", name="Bench")
    model = catalog.artifact_create(
        actor=pm, kind=Model, slug="bench-model", name="Bench model", owner_team=team
    )
    mv = catalog.model_version_create(
        actor=pm, model=model, provider="bench-upstream", provider_model="bench-model"
    )
    prompt = catalog.artifact_create(
        actor=pm, kind=PromptTemplate, slug="bench-prompt", name="Bench prompt", owner_team=team
    )
    pv = catalog.prompt_version_create(
        actor=pm, prompt=prompt, messages=MESSAGES, variables_schema=SCHEMA
    )
    release = release_create(
        actor=pm,
        product=product,
        version="1.0.0",
        prompt_version=pv,
        model_version=mv,
        settings={"max_retries": 0, "timeout_seconds": 10},
    )
    release_freeze(actor=pm, release=release)
    release_release(actor=pm, release=release)
    api = PublishedAPI(slug=SLUG, name="Bench API", product=product, status=APIStatus.PUBLISHED,
                       published_at=timezone.now(), created_by=pm)  # fmt: skip
    as_actor(api, pm).save()
    plan = Plan(api=api, slug="bench", name="Bench", requests_per_minute=1_000_000,
                approval_required=False, created_by=pm)  # fmt: skip
    as_actor(plan, pm).save()
    app = Application(owner=dev, name="bench-app")
    as_actor(app, dev).save()
    sub = Subscription(application=app, api=api, plan=plan, state="active", requested_by=dev,
                       decided_by=pm, decided_at=timezone.now())  # fmt: skip
    as_actor(sub, dev).save()
    secret, prefix = key_generate()
    key = APIKey(application=app, name="bench", prefix=prefix, key_hash=key_hash(secret),
                 expires_at=timezone.now() + timedelta(days=1), created_by=dev)  # fmt: skip
    as_actor(key, dev).save()
    return secret


def database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}{port}/{s['NAME']}"


# ``--cprofile OUT``: the server runs uvicorn under cProfile and dumps the stats at shutdown.
CPROFILED = (
    "import cProfile, signal, sys, uvicorn\n"
    "out, argv = sys.argv[1], sys.argv[2:]\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # uvicorn re-raises it at exit\n"
    "sys.argv = ['uvicorn', *argv]\n"
    "profile = cProfile.Profile()\n"
    "profile.enable()\n"
    "try:\n"
    "    uvicorn.main()\n"
    "except SystemExit:\n"
    "    pass\n"
    "finally:\n"
    "    profile.disable()\n"
    "    profile.dump_stats(out)\n"
)


def start_gateway(args) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_LOG_LEVEL": "WARNING"}
    options = [
        "plmportal.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--lifespan",
        "on",
        "--loop",
        args.loop,
        "--http",
        args.http,
    ]
    if args.cprofile:
        command = [sys.executable, "-c", CPROFILED, str(Path(args.cprofile).resolve()), *options]
    else:
        command = [sys.executable, "-m", "uvicorn", *options]
    proc = subprocess.Popen(command, cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the gateway did not start")


class Sides:
    def __init__(self, upstream: str, gateway_base: str, secret: str) -> None:
        self.client = httpx.AsyncClient(limits=http.LIMITS, timeout=30)
        self.upstream = upstream + "/chat/completions"
        self.gateway = gateway_base + "/v1/chat/completions"
        self.base = gateway_base
        self.auth = {"Authorization": f"Bearer {secret}"}
        self.errors = {"direct": 0, "gateway": 0}

    async def direct(self) -> None:
        r = await self.client.post(
            self.upstream,
            json={"model": "bench-model", "messages": RENDERED, "stream": False},
            headers={"Authorization": "Bearer sk-bench-not-a-real-key"},
        )
        if r.status_code != 200:
            self.errors["direct"] += 1
        r.json()

    async def through(self) -> None:
        r = await self.client.post(
            self.gateway,
            json={"model": SLUG, "messages": [], "variables": VARIABLES},
            headers=self.auth,
        )
        if r.status_code != 200:
            self.errors["gateway"] += 1
        r.json()

    async def upstream_models(self) -> None:
        r = await self.client.get(self.upstream.removesuffix("/chat/completions") + "/models")
        assert r.status_code == 200, r.text

    async def get(self, path: str, headers=None) -> None:
        r = await self.client.get(self.base + path, headers=headers)
        assert r.status_code == 200, r.text


async def sequential(sides: Sides, pairs: int) -> tuple[list[float], list[float]]:
    for _ in range(20):  # warm both paths: connections, the snapshot, the scripts
        await sides.direct()
        await sides.through()
    direct, through = [], []
    for i in range(pairs):
        if i % 2:
            direct.append(await timed(sides.direct()))
            through.append(await timed(sides.through()))
        else:
            through.append(await timed(sides.through()))
            direct.append(await timed(sides.direct()))
    return direct, through


async def concurrent(make, total: int, width: int) -> tuple[list[float], float]:
    samples: list[float] = []
    queue = iter(range(total))

    async def worker():
        for _ in queue:
            samples.append(await timed(make()))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    return samples, total / (time.perf_counter() - t0)


async def measure(sides: Sides, args) -> tuple[bool, int]:
    calls = 0
    rounds = []
    for _ in range(args.rounds):
        direct, through = await sequential(sides, args.sequential)
        calls += 20 + args.sequential
        diffs = [p - d for p, d in zip(through, direct, strict=True)]
        rounds.append((pct(diffs, 0.99), direct, through, diffs))
        print(f"round: added per pair p50 {pct(diffs, 0.5):.2f} ms, p99 {pct(diffs, 0.99):.2f} ms")
    _, direct, through, diffs = min(rounds, key=lambda r: r[0])
    print(
        f"\none request at a time ({args.sequential} pairs, upstream {args.latency_ms} ms; "
        f"the quietest of {args.rounds} rounds)"
    )
    print(line("direct httpx", direct))
    print(line("gateway", through))
    print(line("added (per pair)", diffs))
    added50 = pct(through, 0.5) - pct(direct, 0.5)
    added99 = pct(through, 0.99) - pct(direct, 0.99)
    print(f"{'added (quantiles)':<22}p50 {added50:7.2f} ms   p99 {added99:7.2f} ms")

    p50, p99 = pct(diffs, 0.5), pct(diffs, 0.99)
    if args.sequential_only:
        await sides.client.aclose()
        print(f"\nadded latency one at a time: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
        return p50 <= 2 and p99 <= 5, calls

    errors = 0
    if args.concurrent:
        width, n = args.width, args.concurrent
        await concurrent(sides.direct, width * 2, width)  # warm the pools
        await concurrent(sides.through, width * 2, width)
        calls += width * 2
        sides.errors = {"direct": 0, "gateway": 0}
        d_samples, d_rps = await concurrent(sides.direct, n, width)
        g_samples, g_rps = await concurrent(sides.through, n, width)
        calls += n
        print(f"\n{width} in flight ({n} requests each; saturation of one gateway process)")
        for name, samples, rps, side in (
            ("direct httpx", d_samples, d_rps, "direct"),
            ("gateway", g_samples, g_rps, "gateway"),
        ):
            print(line(name, samples) + f"   {rps:7.0f} req/s   errors {sides.errors[side]}")
        c50 = pct(g_samples, 0.5) - pct(d_samples, 0.5)
        c99 = pct(g_samples, 0.99) - pct(d_samples, 0.99)
        print(f"{'added (quantiles)':<22}p50 {c50:7.2f} ms   p99 {c99:7.2f} ms")
        print(f"throughput ratio gateway/direct {g_rps / d_rps:.2f}")
        errors = sides.errors["gateway"]

    # the thin app against Django's request cycle, same server, one at a time
    thin, dj = [], []
    for _ in range(20):
        await sides.get("/v1/models", sides.auth)
        await sides.get("/healthz")
    up = []
    for _ in range(300):
        thin.append(await timed(sides.get("/v1/models", sides.auth)))
        dj.append(await timed(sides.get("/healthz")))
        up.append(await timed(sides.upstream_models()))
    print("\nthe thin /v1 app against a Django view (same server, one at a time)")
    print(line("GET /v1/models", thin))
    print(line("GET /healthz (Django)", dj))
    print(line("GET upstream (direct)", up))

    ok = p50 <= 2 and p99 <= 5 and errors == 0
    print(
        f"\nadded latency one at a time: p50 {p50:.2f} ms (goal <= 2), "
        f"p99 {p99:.2f} ms (goal <= 5); errors at saturation {errors}: "
        f"{'OK' if ok else 'MISSED'}"
    )
    await sides.client.aclose()
    return ok, calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--concurrent", type=int, default=1280)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop", default="auto", help="uvicorn --loop (auto: uvloop)")
    parser.add_argument("--http", default="auto", help="uvicorn --http (auto: httptools)")
    parser.add_argument("--sequential-only", action="store_true", help="skip the other phases")
    parser.add_argument("--cprofile", metavar="OUT", help="run the server under cProfile")
    parser.add_argument(
        "--py-spy", metavar="OUT", help="sample the server with py-spy (collapsed stacks)"
    )
    args = parser.parse_args()

    upstream, base_url = start_upstream(args.latency_ms)
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    server = None
    try:
        secret = seed(base_url)
        connection.close()
        redis = "yes" if django.conf.settings.REDIS_URL else "no"
        print(f"engine: {connection.vendor}; redis: {redis}")
        server, gateway_base = start_gateway(args)
        spy = None
        if args.py_spy:
            spy = subprocess.Popen(
                [
                    *(os.environ.get("PY_SPY", "py-spy"), "record", "--pid", str(server.pid)),
                    *("--rate", "1000", "--format", "raw", "--output", args.py_spy),
                    *("--nonblocking", "--threads"),
                ]
            )
            time.sleep(1)
        _, calls = asyncio.run(measure(Sides(base_url, gateway_base, secret), args))
        server.send_signal(signal.SIGTERM)  # graceful: the lifespan writes the pending rows
        server.wait(timeout=60)
        server = None
        if spy is not None:
            spy.wait(timeout=60)
        usage = UsageRecord.objects.count()
        provider_calls = ProviderCall.objects.filter(source=CallSource.GATEWAY).count()
        print(
            f"rows written: UsageRecord {usage}, ProviderCall {provider_calls} "
            f"(one each per gateway call: {calls})"
        )
    finally:
        if server is not None:
            server.kill()
            server.wait()
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        upstream.terminate()
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()

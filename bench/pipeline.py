"""The call pipeline's added latency over a direct httpx call to the same upstream.

Starts a local OpenAI-speaking upstream (bench/upstream_app.py, uvicorn, its own process) that
answers after a fixed latency, seeds a throw-away database (the test database of DATABASE_URL,
or a SQLite file) with a release whose model runs on that upstream, then measures:

- one request at a time, in ``--rounds`` rounds (the quietest counts: a shared machine only
  ever adds time): ``--sequential`` pairs, each a direct ``httpx.AsyncClient`` POST and a
  pipeline ``run_chat`` (render the prompt → cache lookup (off) → breaker → call → record one
  ProviderCall in the database), interleaved so that drift hits both alike; prints p50 and p99
  of the per-pair difference and of the two latency distributions;
- ``--concurrency`` requests in flight (64 by default): the same for each side, with throughput.

Goal on this machine, one request at a time: p50 <= 2 ms and p99 <= 5 ms added.

    .venv/bin/python bench/pipeline.py [--latency-ms 20] [--sequential 400] [--concurrent 1280]
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plmportal.settings")
os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")

import django

django.setup()

import httpx
from asgiref.sync import sync_to_async
from django.db import connection, connections

from apps.accounts import services as accounts
from apps.catalog import services as catalog
from apps.catalog.models import Model, PromptTemplate
from apps.gateway import http, pipeline
from apps.gateway import services as gateway
from apps.gateway.models import ProviderCall
from apps.gateway.pipeline import resolve_target, run_chat
from apps.releases.services import release_create

MESSAGES = [
    {"role": "system", "content": "You are the support assistant of {{ company }}. Be brief."},
    {"role": "user", "content": "{{ question }}"},
]
SCHEMA = {
    "type": "object",
    "properties": {"company": {"type": "string"}, "question": {"type": "string"}},
    "required": ["company", "question"],
}
VARIABLES = {"company": "ACME", "question": "How do I reset my password?"}
RENDERED = [
    {"role": "system", "content": "You are the support assistant of ACME. Be brief."},
    {"role": "user", "content": "How do I reset my password?"},
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_upstream(latency_ms: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "upstream_app.py"), str(port), str(latency_ms)]
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the bench upstream did not start")


def seed(base_url: str):
    team = accounts.team_create(actor=None, slug="bench", name="Bench")
    root = accounts.user_create(actor=None, username="bench-admin", password="bench-pass-9876")
    root.is_superuser = True
    root.save(update_fields=["is_superuser"])
    pm = accounts.user_create(actor=None, username="bench-pm", password="bench-pass-9876")
    accounts.membership_add(actor=None, user=pm, team=team, role="product_manager")
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
    return resolve_target(release=release)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def direct_call(client: httpx.AsyncClient, url: str) -> None:
    response = await client.post(
        url,
        json={"model": "bench-model", "messages": RENDERED, "stream": False},
        headers={"Authorization": "Bearer sk-bench-not-a-real-key"},
    )
    response.raise_for_status()
    response.json()


async def pipeline_call(target) -> None:
    result = await run_chat(target, variables=VARIABLES)
    assert result.outcome == "ok"


async def timed(coro) -> float:
    t0 = time.perf_counter()
    await coro
    return (time.perf_counter() - t0) * 1000


async def sequential(target, client, url, pairs: int) -> tuple[list[float], list[float]]:
    for _ in range(20):  # warm both paths: connections, caches, the breaker script
        await direct_call(client, url)
        await pipeline_call(target)
    direct, piped = [], []
    for i in range(pairs):
        if i % 2:
            direct.append(await timed(direct_call(client, url)))
            piped.append(await timed(pipeline_call(target)))
        else:
            piped.append(await timed(pipeline_call(target)))
            direct.append(await timed(direct_call(client, url)))
    return direct, piped


async def concurrent(make, total: int, width: int) -> tuple[list[float], float]:
    samples: list[float] = []
    queue = iter(range(total))

    async def worker():
        for _ in queue:
            samples.append(await timed(make()))

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(width)))
    return samples, total / (time.perf_counter() - t0)


def line(name: str, samples: list[float]) -> str:
    return f"{name:<22}p50 {pct(samples, 0.5):7.2f} ms   p99 {pct(samples, 0.99):7.2f} ms"


async def measure(target, base_url: str, args) -> bool:
    url = base_url + "/chat/completions"
    client = httpx.AsyncClient(limits=http.LIMITS, timeout=30)
    try:
        rounds = []
        for _ in range(args.rounds):
            direct, piped = await sequential(target, client, url, args.sequential)
            diffs = [p - d for p, d in zip(piped, direct, strict=True)]
            rounds.append((pct(diffs, 0.99), direct, piped, diffs))
            print(
                f"round: added per pair p50 {pct(diffs, 0.5):.2f} ms, p99 {pct(diffs, 0.99):.2f} ms"
            )
        # On a shared machine other processes only ever add time: the quietest round counts.
        _, direct, piped, diffs = min(rounds, key=lambda r: r[0])
        print(
            f"\none request at a time ({args.sequential} pairs, upstream {args.latency_ms} ms; "
            f"the quietest of {args.rounds} rounds)"
        )
        print(line("direct httpx", direct))
        print(line("pipeline", piped))
        print(line("added (per pair)", diffs))
        added50 = pct(piped, 0.5) - pct(direct, 0.5)
        added99 = pct(piped, 0.99) - pct(direct, 0.99)
        print(f"{'added (quantiles)':<22}p50 {added50:7.2f} ms   p99 {added99:7.2f} ms")

        width = args.width
        n = args.concurrent
        await concurrent(lambda: direct_call(client, url), width * 2, width)  # warm
        d_samples, d_rps = await concurrent(lambda: direct_call(client, url), n, width)
        p_samples, p_rps = await concurrent(lambda: pipeline_call(target), n, width)
        print(f"\n{width} in flight ({args.concurrent} requests each)")
        print(line("direct httpx", d_samples) + f"   {d_rps:7.0f} req/s")
        print(line("pipeline", p_samples) + f"   {p_rps:7.0f} req/s")
        c50 = pct(p_samples, 0.5) - pct(d_samples, 0.5)
        c99 = pct(p_samples, 0.99) - pct(d_samples, 0.99)
        print(f"{'added (quantiles)':<22}p50 {c50:7.2f} ms   p99 {c99:7.2f} ms")
        print(f"throughput ratio pipeline/direct {p_rps / d_rps:.2f}")

        p50, p99 = pct(diffs, 0.5), pct(diffs, 0.99)
        ok = p50 <= 2 and p99 <= 5
        print(
            f"\nadded latency one at a time: p50 {p50:.2f} ms (goal <= 2), "
            f"p99 {p99:.2f} ms (goal <= 5): {'OK' if ok else 'MISSED'}"
        )
        return ok
    finally:
        await client.aclose()
        await pipeline.aclose()  # writes the last call rows
        await sync_to_async(connections.close_all, thread_sensitive=True)()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency-ms", type=float, default=20)
    parser.add_argument("--sequential", type=int, default=400)
    parser.add_argument("--concurrent", type=int, default=1280)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    upstream, base_url = start_upstream(args.latency_ms)
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        target = seed(base_url)
        redis = "yes" if django.conf.settings.REDIS_URL else "no"
        print(f"engine: {connection.vendor}; redis: {redis}")
        asyncio.run(measure(target, base_url, args))
        calls = ProviderCall.objects.count()
        expected = args.rounds * (20 + args.sequential) + args.concurrent  # warm-ups included
        print(f"ProviderCall rows written: {calls} (one per pipeline request: {expected})")
    finally:
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        upstream.terminate()
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()

"""Evaluation-run throughput through a real Celery worker against a local upstream.

Starts a local OpenAI-speaking upstream (bench/upstream_app.py, uvicorn, its own process) that
answers after a fixed latency, seeds a throw-away database (the test database of DATABASE_URL,
or a SQLite file) with a release whose model runs on that upstream and a suite of ``--cases``
cases, starts ONE Celery worker process (``-P solo``, on the configured broker: Redis when
REDIS_URL is set, else the filesystem broker) and runs the suite at ``--concurrency``: every
case is one call through the pipeline (render → breaker → call → ProviderCall), holding a lease
of the provider's limiter, checked by its assertion and written as an EvalResult.

Prints the cases per second, and the ratio to the ideal ``concurrency / latency`` (what the calls
alone would allow), from the run's start to its end (every chunk, every result written, the
aggregates): goal ratio >= 0.8. It prints the same from the run's creation too, which adds the
broker's hand-over of the run to the worker (up to the filesystem broker's 1 s polling interval
without Redis). A warm-up run of ``--warmup`` cases goes first (imports, connections, pools).

    .venv/bin/python bench/evals.py [--cases 1000] [--latency-ms 50] [--concurrency 16]
"""

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plmportal.settings")
os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")

import django

django.setup()

from django.conf import settings
from django.db import connection

from apps.evaluations import runs
from apps.evaluations import services as suites
from apps.evaluations.models import EvalResult, EvalRun
from apps.gateway.models import ProviderCall
from bench.pipeline import seed, start_upstream
from tests.worker import Worker

GOAL = 0.8


def suite_version(actor, team, n: int, key: str):
    suite = suites.suite_create(actor=actor, owner_team=team, slug=key, name=key.title())
    cases = [
        {
            "key": f"case-{i:05d}",
            "variables": {"company": "ACME", "question": f"Question number {i}?"},
            "assertions": [{"type": "contains", "value": "hello"}],
        }
        for i in range(n)
    ]
    return suites.suite_version_create(actor=actor, suite=suite, cases=cases)


def run_once(pm, release, version, concurrency: int, timeout: float) -> tuple[EvalRun, float]:
    t0 = time.perf_counter()
    run = runs.eval_run_create(
        actor=pm, suite_version=version, release=release, concurrency=concurrency
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run.refresh_from_db()
        if run.is_finished:
            return run, time.perf_counter() - t0
        time.sleep(0.02)
    raise SystemExit(f"the run did not finish in {timeout:g} s: {run.state} {run.completed}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=64)
    args = parser.parse_args()

    upstream, base_url = start_upstream(args.latency_ms)
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    worker = None
    try:
        target = seed(base_url)
        release = target.release
        pm = type(release.created_by).objects.get(pk=release.created_by_id)
        team = release.product.owner_team
        provider = target.legs[0].provider
        provider.config = {**(provider.config or {}), "max_concurrency": args.concurrency * 2}
        provider.save(update_fields=["config"])
        warm = suite_version(pm, team, args.warmup, "bench-warmup")
        version = suite_version(pm, team, args.cases, "bench-suite")
        connection.close()  # the worker process opens its own

        worker = Worker().start()
        settings.EVALUATIONS_TASK_QUEUE = worker.queue
        redis = "yes" if settings.REDIS_URL else "no (filesystem broker, file-lock limiter)"
        print(f"engine: {connection.vendor}; redis: {redis}; one worker (-P solo)")

        run_once(pm, release, warm, args.concurrency, 120)  # imports, connections, pools
        run, seconds = run_once(pm, release, version, args.concurrency, 600)

        ideal = args.concurrency / (args.latency_ms / 1000)
        worked = (run.finished_at - run.started_at).total_seconds()
        rate, end_to_end = args.cases / worked, args.cases / seconds
        aggregates = run.aggregates
        print(
            f"\n{args.cases} cases, concurrency {args.concurrency}, upstream latency "
            f"{args.latency_ms:g} ms; ideal {ideal:.0f} cases/s"
        )
        print(f"run {run.state}: {run.completed} results, {run.passed} passed")
        print(
            f"per call through the pipeline: p50 {aggregates['latency_ms']['p50']} ms, "
            f"p95 {aggregates['latency_ms']['p95']} ms"
        )
        print(
            f"started → finished   {worked:6.2f} s  {rate:6.1f} cases/s  ratio {rate / ideal:.2f}"
        )
        print(
            f"created → finished   {seconds:6.2f} s  {end_to_end:6.1f} cases/s  ratio "
            f"{end_to_end / ideal:.2f}  (with the broker handing the run to the worker)"
        )
        results = EvalResult.objects.filter(run=run)
        calls = ProviderCall.objects.filter(pk__in=results.values("call_id")).count()
        print(f"EvalResult rows {results.count()}, their ProviderCall rows {calls}")
        ok = rate / ideal >= GOAL and run.state == "succeeded" and results.count() == args.cases
        print(
            f"\nratio to the ideal {rate / ideal:.2f} (goal >= {GOAL}): {'OK' if ok else 'MISSED'}"
        )
    finally:
        if worker is not None:
            worker.stop()
        connection.close()
        connection.creation.destroy_test_db(old_name, verbosity=0)
        upstream.terminate()
        upstream.wait(timeout=10)


if __name__ == "__main__":
    main()

"""Evaluation runs through real Celery worker processes against a local upstream speaking the
OpenAI protocol (not ``task_always_eager``), on the configured broker (Redis in CI, the
filesystem broker locally) and the test database.

- The session's worker runs a run end to end.
- A worker is killed (SIGKILL) in the middle of a run and started again under the same name:
  it takes over the lost chain at its start and the run completes with every case counted once.
  (The filesystem broker deletes a message when it hands it out and Redis hands a killed
  worker's unacked message out again only after its visibility timeout, an hour: the takeover
  at the worker's start is what brings the run back at once on both.)
- A worker's pool process is killed in the middle of a chunk: with ``acks_late`` and
  ``reject_on_worker_lost`` the worker requeues the chunk, which runs again its cases still
  without a result.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from apps.evaluations import runs
from apps.evaluations.models import EvalResult, EvalRun
from apps.gateway.models import ProviderCall

from .. import worker as shared_worker
from ..factories import artifact, member, product, prompt_with_versions
from ..gateway.factories import price, provider
from ..gateway.upstream import Upstream
from .factories import case_dict, suite_with_cases

ROOT = Path(__file__).resolve().parents[2]

# Starts a worker with short chunks and frequent writes, so that a kill lands in the middle of
# a chain of chunks. Settings are not environment variables, hence this launcher.
LAUNCH = """
import os, sys
sys.path.insert(0, {root!r})
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plmportal.settings")
import django
django.setup()
from django.conf import settings
settings.EVALUATIONS_CHUNK_SECONDS = 0.4
settings.EVALUATIONS_FLUSH_SECONDS = 0.1
from plmportal.celery import app
app.worker_main({argv!r})
"""


class RunWorker:
    """A worker process of a fixed name on its own queue, that a test may kill and restart."""

    def __init__(self, *, pool: str = "solo") -> None:
        tag = uuid.uuid4().hex[:8]
        self.queue = f"evals-{tag}"
        self.name = f"evals-{tag}@{os.uname().nodename}"
        self.pool = pool
        self.proc: subprocess.Popen | None = None
        self.log = ROOT / "var" / f"{self.queue}.log"
        self.starts = 0

    def start(self, timeout: float = 60) -> "RunWorker":
        argv = ["worker", "-P", self.pool, "-Q", self.queue, "-n", self.name, "--loglevel=INFO"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        if self.pool == "prefork":
            argv += ["-c", "1"]
        env = {
            **os.environ,
            "DATABASE_URL": shared_worker.test_database_url(),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("PLM_TEST_SQLITE", None)
        self.log.parent.mkdir(exist_ok=True)
        self._fh = self.log.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", LAUNCH.format(root=str(ROOT), argv=argv)],
            cwd=ROOT,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.output()[-3000:]}")
            if self.output().count(" ready.") >= self.starts:
                return self
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready in {timeout}s: {self.output()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the worker's main process (and so the task it runs): no shutdown at all."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        for pid in self._children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._fh.close()

    def _children(self) -> list[int]:
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(pid) for pid in text.split()]

    def kill_pool_process(self) -> int:
        """SIGKILL the pool process running the task (prefork); the worker itself lives on."""
        children = self._children()
        assert children, "no pool process"
        os.kill(children[0], signal.SIGKILL)
        return children[0]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if not self._fh.closed:
            self._fh.close()
        self.log.unlink(missing_ok=True)

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


def _wait(fetch, done, timeout=90):
    deadline = time.monotonic() + timeout
    obj = fetch()
    while time.monotonic() < deadline:
        obj = fetch()
        if done(obj):
            return obj
        time.sleep(0.05)
    return obj


def _upstream_release(owner, base_url: str):
    """A release of a new product whose model runs on an OpenAI-compatible provider at
    ``base_url`` (no secret: the worker process has its own keys)."""
    from apps.catalog import services as catalog
    from apps.catalog.models import Model
    from apps.releases.services import release_create

    team = owner.memberships.first().team
    prov = provider(kind="openai_compatible", base_url=base_url, config={"max_concurrency": 16})
    price(prov.created_by, prov, model="upstream-model", inp="1", out="2")
    mv = catalog.model_version_create(
        actor=owner,
        model=artifact(owner, Model, team),
        provider=prov.slug,
        provider_model="upstream-model",
    )
    _, (pv,) = prompt_with_versions(owner, "Answer.", team=team)
    return release_create(
        actor=owner,
        product=product(owner, team),
        version="1.0.0",
        prompt_version=pv,
        model_version=mv,
        settings={"max_retries": 0, "timeout_seconds": 10},
    )


def _cases(n: int) -> list[dict]:
    # The upstream always answers "hello from upstream".
    return [
        case_dict(f"case-{i:03d}", assertions=[{"type": "contains", "value": "hello"}])
        for i in range(n)
    ]


def _assert_counted_once(run: EvalRun) -> None:
    results = EvalResult.objects.filter(run=run)
    keys = list(results.values_list("case__key", flat=True))
    assert len(keys) == len(set(keys)) == run.total, (len(keys), run.total)
    assert run.completed == results.count() == run.total
    assert run.passed == results.filter(outcome="pass").count()
    assert run.errored == results.filter(outcome="error").count()
    assert run.aggregates["completed"] == run.total


@pytest.fixture
def owner():
    from apps.accounts.roles import PRODUCT_MANAGER

    return member(PRODUCT_MANAGER)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_run_on_a_real_worker_against_an_openai_upstream(celery_worker, settings, owner):
    """GIVEN the session's worker and a local OpenAI-speaking upstream
    WHEN a run of 6 cases (one failing) is created
    THEN the worker runs it to the end: one upstream request and one result per case."""
    settings.EVALUATIONS_TASK_QUEUE = celery_worker.queue
    with Upstream() as up:
        rel = _upstream_release(owner, up.base_url)
        cases = [*_cases(5), case_dict("odd", assertions=[{"type": "contains", "value": "bye"}])]
        version = suite_with_cases(owner, rel.product.owner_team, cases)
        run = runs.eval_run_create(actor=owner, suite_version=version, release=rel, concurrency=3)
        run = _wait(lambda: EvalRun.objects.get(pk=run.pk), lambda r: r.is_finished)
        assert run.state == "succeeded", (run.state, run.error, celery_worker.output()[-3000:])
        assert (run.completed, run.passed, run.errored) == (6, 5, 0)
        assert len([r for r in up.requests if r.path.endswith("/chat/completions")]) == 6
    _assert_counted_once(run)
    assert run.aggregates["per_assertion"] == {"contains": pytest.approx(5 / 6)}
    assert run.cost > 0 and run.aggregates["tokens"] == {"in": 60, "out": 30}
    assert ProviderCall.objects.filter(source="evaluation").count() == 6


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_run_and_started_again_completes_it_counting_each_case_once(
    settings, owner
):
    """GIVEN a run of 30 cases on a worker, each call taking 150 ms, chunks of 0.4 s
    WHEN the worker is SIGKILLed once 8 cases have results, and started again (same name)
    THEN the restarted worker takes the run over at its start and the run succeeds: every case
    has exactly one result and the counters equal the results."""
    worker = RunWorker()
    settings.EVALUATIONS_TASK_QUEUE = worker.queue
    with Upstream() as up:
        up.script(*[("slow", 150)] * 200)
        rel = _upstream_release(owner, up.base_url)
        version = suite_with_cases(owner, rel.product.owner_team, _cases(30))
        try:
            worker.start()
            run = runs.eval_run_create(
                actor=owner, suite_version=version, release=rel, concurrency=2
            )
            mid = _wait(lambda: EvalRun.objects.get(pk=run.pk), lambda r: r.completed >= 8)
            assert mid.state == "running", (mid.state, worker.output()[-3000:])
            worker.kill()
            time.sleep(0.5)
            killed = EvalRun.objects.get(pk=run.pk)
            assert killed.state == "running" and killed.completed < killed.total, killed.completed
            worker.start()
            run = _wait(lambda: EvalRun.objects.get(pk=run.pk), lambda r: r.is_finished)
            assert run.state == "succeeded", (run.state, run.error, worker.output()[-4000:])
        finally:
            worker.stop()
    _assert_counted_once(run)
    assert run.passed == 30
    assert run.epoch >= 1  # taken over by the restarted worker
    # Calls that were in flight at the kill were made again: at least one call per case.
    assert ProviderCall.objects.filter(source="evaluation").count() >= 30


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_killed_pool_process_s_chunk_is_redelivered_and_completes(settings, owner):
    """GIVEN a prefork worker running a run's chunk in its pool process
    WHEN that pool process is SIGKILLed mid-chunk
    THEN the worker requeues the chunk (acks_late + reject_on_worker_lost), a new pool process
    runs its cases still without a result, and the run succeeds with each case counted once,
    without any takeover (same epoch)."""
    worker = RunWorker(pool="prefork")
    settings.EVALUATIONS_TASK_QUEUE = worker.queue
    with Upstream() as up:
        up.script(*[("slow", 150)] * 200)
        rel = _upstream_release(owner, up.base_url)
        version = suite_with_cases(owner, rel.product.owner_team, _cases(24))
        try:
            worker.start()
            run = runs.eval_run_create(
                actor=owner, suite_version=version, release=rel, concurrency=2
            )
            _wait(lambda: EvalRun.objects.get(pk=run.pk), lambda r: r.completed >= 6)
            worker.kill_pool_process()
            run = _wait(lambda: EvalRun.objects.get(pk=run.pk), lambda r: r.is_finished)
            assert run.state == "succeeded", (run.state, run.error, worker.output()[-4000:])
            assert "WorkerLostError" in worker.output() or "SIGKILL" in worker.output()
        finally:
            worker.stop()
    _assert_counted_once(run)
    assert run.epoch == 0

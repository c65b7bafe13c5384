"""A playground run and a small batch through a real Celery worker process."""

import time

import pytest

from apps.playground import services
from apps.playground.models import BatchRun, PlaygroundRun

from .factories import builtin, dataset_version, pm, runnable_release


def _wait(fetch, done, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = fetch()
        if done(obj):
            return obj
        time.sleep(0.2)
    return fetch()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_run_and_a_batch_run_on_a_real_worker(celery_worker, settings):
    """GIVEN the worker's queue and chunks of 2 rows
    WHEN a playground run and a 3-row batch (one bad row) are created
    THEN the worker answers the run, and runs the batch as two chained chunks on the same queue:
    2 rows succeed, 1 fails, and the batch succeeds."""
    settings.PLAYGROUND_TASK_QUEUE = celery_worker.queue
    settings.PLAYGROUND_BATCH_CHUNK_SIZE = 2
    owner = pm()
    builtin()
    rel = runnable_release(owner)
    run = services.playground_run_create(
        actor=owner, release=rel, variables={"question": "Are you a real worker?"}
    )
    dv = dataset_version(owner, [{"question": "one"}, {"question": ""}, {"question": "three"}])
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv)

    run = _wait(lambda: PlaygroundRun.objects.get(pk=run.pk), lambda r: r.done)
    assert run.state == "succeeded", (run.error_message, celery_worker.output()[-3000:])
    assert run.output == "[builtin] Are you a real worker?"
    assert run.tokens_out == 6 and run.cost > 0 and run.latency_ms is not None
    assert run.messages[-1]["content"] == "Are you a real worker?"

    batch = _wait(lambda: BatchRun.objects.get(pk=batch.pk), lambda b: not b.active)
    assert batch.state == "succeeded", (batch.error_message, celery_worker.output()[-3000:])
    assert (batch.succeeded_count, batch.failed_count, batch.cursor) == (2, 1, 2)
    states = list(batch.items.order_by("index").values_list("state", flat=True))
    assert states == ["succeeded", "failed", "succeeded"]

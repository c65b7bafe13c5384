"""Thin Celery wrappers of ``evaluations.runs``: ids in, one service call, what comes next
enqueued when the service's transaction has committed.

- ``start_run(run_id)``: queued → running, and the first chunk in the same task.
- ``run_chunk(run_id, start, epoch)``: one chunk of the run's cases from rank ``start`` (see
  ``evaluations.runs``); it enqueues the next chunk, on the queue it came from, when it hands
  on. A run has one chunk in flight at a time; successive chunks go to whichever worker is free.
- ``recover_runs(worker="")``: take over lost chains. It runs when a worker starts (for the
  chunks that died with the previous process of that name) and every
  ``RECOVER_EVERY_SECONDS`` under ``celery beat`` (for chains silent for
  ``EVALUATIONS_STALL_SECONDS``).

Every task is ``acks_late`` with ``reject_on_worker_lost``: a chunk whose worker process died
is handed out again (a killed pool process's message is requeued on any broker; a message held
by a killed worker *process* comes back on Redis after the visibility timeout, and is gone on
the filesystem broker, which is what ``recover_runs`` at the worker's start is for). A
redelivered or stale task does nothing (the services check the run's cursor and epoch). An
exception is retried with backoff (the chunk then runs only its cases still without a result);
after ``MAX_RETRIES`` the run fails with the reason.
"""

import logging

from celery import current_app, shared_task
from celery.signals import worker_ready
from django.db import connections, transaction

from . import runs
from .models import EvalRun

logger = logging.getLogger(__name__)

MAX_RETRIES = 3
RECOVER_EVERY_SECONDS = 60.0


def _options(task=None, queue: str | None = None) -> dict:
    if queue is None and task is not None:
        delivery = getattr(task.request, "delivery_info", None) or {}
        queue = delivery.get("routing_key")
    queue = queue or runs.task_queue()
    return {"queue": queue} if queue else {}


def _send_chunk(run_id: str, start: int, epoch: int, options: dict) -> None:
    transaction.on_commit(lambda: run_chunk.apply_async(args=[run_id, start, epoch], **options))


def _send(restarts: list, options: dict) -> None:
    for restart in restarts:
        if restart.start is None:
            start_run.apply_async(args=[restart.run_id], **options)
        else:
            run_chunk.apply_async(args=[restart.run_id, restart.start, restart.epoch], **options)


def _fail(run_id: str, what: str, exc: BaseException) -> None:
    runs.eval_run_fail(
        run_id=run_id,
        message=f"The run stopped: {what} broke {MAX_RETRIES + 1} times "
        f"({type(exc).__name__}: {exc}). Start it again.",
    )


def _chunk(task, run_id: str, start: int, epoch: int) -> int | None:
    try:
        next_start = runs.eval_run_chunk(
            run_id=run_id, start=start, epoch=epoch, worker=task.request.hostname or ""
        )
    except EvalRun.DoesNotExist:  # a message of another database (or a deleted run): drop it
        logger.warning("evaluation run %s does not exist; its task is dropped", run_id)
        return None
    except Exception as exc:
        if task.request.retries < task.max_retries:
            # Idempotent: a retry calls only the chunk's cases still without a result.
            raise task.retry(exc=exc, countdown=2 ** (task.request.retries + 1)) from exc
        logger.exception(
            "evaluation run %s: the chunk at case %s broke %d times", run_id, start, MAX_RETRIES + 1
        )
        _fail(run_id, f"the chunk from case {start + 1}", exc)
        raise
    if next_start is not None:
        _send_chunk(run_id, next_start, epoch, _options(task))
    return next_start


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def start_run(self, run_id: str) -> int | None:
    """queued → running, and the run's first chunk in the same task. Redelivered before the
    chunk handed on, it runs that chunk's cases still without a result; after, it does nothing
    (the cursor has moved on)."""
    return _chunk(self, run_id, 0, 0)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def run_chunk(self, run_id: str, start: int = 0, epoch: int = 0) -> int | None:
    return _chunk(self, run_id, start, epoch)


@shared_task(bind=True, acks_late=True)
def recover_runs(self, worker: str = "") -> int:
    restarts = runs.eval_run_recover(worker=worker)
    _send(restarts, _options(self))
    return len(restarts)


def _consumed_queue(consumer) -> str | None:
    """The first queue the starting worker consumes (where its recovered chains go)."""
    try:
        queues = consumer.app.amqp.queues.consume_from or {}
    except AttributeError:
        return None
    return next(iter(queues), None)


@worker_ready.connect
def _recover_at_worker_start(sender=None, **kwargs) -> None:
    """A worker (re)starting takes over the chains its previous process was running."""
    hostname = getattr(sender, "hostname", "") or ""
    try:
        restarts = runs.eval_run_recover(worker=hostname)
        if restarts:
            _send(restarts, _options(queue=_consumed_queue(sender)))
    except Exception:  # never keep a worker from starting; the periodic sweep tries again
        logger.exception("evaluation runs: recovery at the start of %s failed", hostname)
    finally:
        connections.close_all()


current_app.add_periodic_task(
    RECOVER_EVERY_SECONDS, recover_runs.s(), name="evaluations: take over lost run chains"
)

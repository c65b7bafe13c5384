"""Thin Celery wrappers: ids in, one service call.

A batch runs as a chain of chunk tasks: each chunk enqueues the next one when it ends, so a
batch has one chunk in flight at a time (at most its ``concurrency`` calls at once, however many
rows it has) and the broker holds one message per running batch, not one per row. The next
chunk goes to the queue this one came from.
"""

import logging

from celery import shared_task
from django.db import transaction

from . import services

logger = logging.getLogger(__name__)

MAX_RETRIES = 3


def _queue(task) -> str | None:
    delivery = getattr(task.request, "delivery_info", None) or {}
    return delivery.get("routing_key") or services.task_queue()


@shared_task(bind=True, acks_late=True)
def run_playground(self, run_id: str) -> str:
    try:
        return services.playground_run_execute(run_id=run_id).state
    except Exception:
        logger.exception("playground run %s broke", run_id)
        services.playground_run_fail(
            run_id=run_id,
            code="internal_error",
            message="The run stopped on an internal error and was not completed; try again.",
        )
        raise


@shared_task(bind=True, acks_late=True, max_retries=MAX_RETRIES)
def run_batch_chunk(self, batch_id: str, start: int) -> int | None:
    try:
        next_start = services.batch_run_chunk(batch_id=batch_id, start=start)
    except Exception as exc:
        if self.request.retries < self.max_retries:
            # The chunk is idempotent: a retry runs only the rows still unfinished.
            raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
        logger.exception("batch %s chunk at row %s broke %d times", batch_id, start, MAX_RETRIES)
        services.batch_run_fail(
            batch_id=batch_id,
            message=f"rows from {start} could not be run ({type(exc).__name__}).",
        )
        raise
    if next_start is not None:
        queue = _queue(self)
        options = {"queue": queue} if queue else {}
        transaction.on_commit(
            lambda: run_batch_chunk.apply_async(args=[batch_id, next_start], **options)
        )
    return next_start

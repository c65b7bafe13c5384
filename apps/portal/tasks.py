"""Thin Celery wrappers of the portal: e-mail notifications and the usage rollups.

- ``portal.notify(event, object_id, data)``: one notification (``notifications.deliver``),
  retried with backoff when the mail server fails.
- ``portal.rollup_usage()``: recompute the usage rollups touched since the last run; every
  ``PORTAL_ROLLUP_EVERY_SECONDS`` under ``celery beat`` (``scripts/run.sh`` starts the worker
  with ``-B``). Idempotent: a redelivered or overlapping run changes nothing more.
"""

import logging

from celery import current_app, shared_task
from django.conf import settings

from . import notifications, rollups

logger = logging.getLogger(__name__)

MAX_RETRIES = 5


@shared_task(bind=True, acks_late=True, name="portal.notify", max_retries=MAX_RETRIES)
def notify(self, event: str, object_id: str, data: dict | None = None) -> int:
    try:
        return notifications.deliver(event, object_id, data)
    except OSError as exc:  # SMTP and socket errors: try again later
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc


@shared_task(bind=True, acks_late=True, name="portal.rollup_usage")
def rollup_usage(self) -> dict:
    report = rollups.rollup_usage()
    return {"created": report.created, "updated": report.updated, "deleted": report.deleted}


current_app.add_periodic_task(
    settings.PORTAL_ROLLUP_EVERY_SECONDS, rollup_usage.s(), name="portal: roll up usage"
)

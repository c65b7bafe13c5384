"""Thin Celery wrappers of the audit services.

- ``verify_chain(run_id)``: one verification run (``services.verification_run``), progress saved
  on the run as it goes; a redelivered task of a finished run does nothing.
- ``audit.checkpoint``: under ``celery beat`` every ``checkpoints.checkpoint_beat_seconds()``
  (≤ 5 minutes), signs a checkpoint when the oldest event not yet anchored is about
  ``AUDIT_CHECKPOINT_INTERVAL_SECONDS`` old (so events are anchored at least hourly even when
  fewer than ``AUDIT_CHECKPOINT_EVERY`` arrive).
"""

from celery import current_app, shared_task

from .checkpoints import checkpoint_beat_seconds, checkpoint_create
from .services import verification_run


@shared_task(bind=True, acks_late=True)
def verify_chain(self, run_id: int) -> str:
    return verification_run(run_id=run_id).state


@shared_task(bind=True, acks_late=True, name="audit.checkpoint")
def checkpoint(self, force: bool = False) -> int | None:
    """The seq of the checkpoint signed, or None when none was due."""
    created = checkpoint_create(force=force)
    return created.seq if created else None


current_app.add_periodic_task(
    checkpoint_beat_seconds(), checkpoint.s(), name="audit: sign a checkpoint of the chain"
)

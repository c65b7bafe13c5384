"""Signed checkpoints of the audit chain.

A checkpoint signs (seq, head hash, time, key id) of the newest event with the Ed25519 key of
``apps.audit.signing``. ``audit_record`` writes one in the appending transaction whenever an
event's seq is a multiple of ``AUDIT_CHECKPOINT_EVERY`` (one extra insert every N events), and
the ``audit.checkpoint`` beat task (every ``checkpoint_beat_seconds()``) writes one when the
oldest event not yet anchored is about ``AUDIT_CHECKPOINT_INTERVAL_SECONDS`` old, so no event
stays unanchored much longer than that on a quiet system.

Checkpoints are written under the chain head's row lock, so a checkpoint always names an event
that is in the chain, in order.
"""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.core.exceptions import Conflict

from . import signing
from .ed25519 import checkpoint_payload
from .models import AuditChainHead, AuditCheckpoint, AuditEvent

BEAT_MAX_SECONDS = 300.0


def checkpoint_every() -> int:
    """Events between two automatic checkpoints (``AUDIT_CHECKPOINT_EVERY``; 0 turns them off)."""
    return int(getattr(settings, "AUDIT_CHECKPOINT_EVERY", 1000) or 0)


def checkpoint_interval_seconds() -> float:
    return float(getattr(settings, "AUDIT_CHECKPOINT_INTERVAL_SECONDS", 3600.0))


def checkpoint_beat_seconds() -> float:
    """How often the beat task looks for unanchored events."""
    return max(1.0, min(BEAT_MAX_SECONDS, checkpoint_interval_seconds()))


def checkpoint_latest() -> AuditCheckpoint | None:
    """The checkpoint with the highest seq, or None."""
    return AuditCheckpoint.objects.order_by("-seq").first()


def checkpoint_write(*, head: AuditChainHead) -> AuditCheckpoint:
    """Sign and store a checkpoint of ``head``. The caller holds the head's row lock."""
    previous = (
        AuditCheckpoint.objects.filter(seq__lt=head.last_seq)
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
    )
    at = timezone.now()
    kid = signing.key_id()
    checkpoint = AuditCheckpoint(
        seq=head.last_seq,
        head_hash=head.last_hash,
        at=at,
        key_id=kid,
        signature=signing.sign(
            checkpoint_payload(head.last_seq, head.last_hash, at.isoformat(), kid)
        ),
        events=head.last_seq - (previous or 0),
    )
    checkpoint.save(force_insert=True)
    return checkpoint


def checkpoint_due_after_append(seq: int) -> bool:
    every = checkpoint_every()
    return every > 0 and seq % every == 0


def checkpoint_create(*, force: bool = False) -> AuditCheckpoint | None:
    """Sign a checkpoint of the chain's head when events were added since the latest one.

    Without ``force`` (the beat task) only when the oldest unanchored event is old enough that
    waiting for the next beat would leave it unanchored for longer than the interval. Returns
    None when there is nothing to do. Refuses (409) when the head is behind the latest
    checkpoint: the chain was truncated, and signing would paper over it.
    """
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(id=1)
        latest_seq = (
            AuditCheckpoint.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
        )
        if head.last_seq < latest_seq:
            raise Conflict(
                "chain_truncated",
                f"The chain head is at #{head.last_seq} but a checkpoint was signed at "
                f"#{latest_seq}: the chain was truncated. Run `manage.py audit_verify`.",
            )
        if head.last_seq == latest_seq:
            return None
        if not force:
            oldest = (
                AuditEvent.objects.filter(seq=latest_seq + 1).values_list("at", flat=True).first()
            )
            wait = checkpoint_interval_seconds() - checkpoint_beat_seconds()
            if oldest is not None and oldest > timezone.now() - timedelta(seconds=wait):
                return None
        return checkpoint_write(head=head)

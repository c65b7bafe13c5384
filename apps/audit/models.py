"""The append-only, hash-chained audit trail.

Each event's ``hash`` is sha256 over the previous event's hash and the canonical JSON of this
event's content. ``AuditChainHead`` holds the sequence number and hash of the newest event; it
is locked while an event is appended, so the chain has one order even under concurrent writes,
and a deleted tail is detected because the head no longer matches the last row.

``AuditCheckpoint`` rows sign (seq, head hash, time) with a key kept outside the database, so
a rewrite of the whole chain (hashes recomputed, head updated) still fails verification.
"""

from django.conf import settings
from django.db import models

from apps.core.exceptions import ApplicationError
from apps.core.hashing import content_hash
from apps.core.models import GovernedQuerySet

GENESIS_HASH = "0" * 64


class AuditEventQuerySet(GovernedQuerySet):
    pass


class AuditEvent(models.Model):
    seq = models.BigIntegerField(primary_key=True)
    at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
    )
    actor_username = models.CharField(max_length=150, blank=True)
    verb = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=100, blank=True, db_index=True)
    object_id = models.CharField(max_length=64, blank=True, db_index=True)
    object_repr = models.CharField(max_length=200, blank=True)
    product_id = models.UUIDField(null=True, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    ip_address = models.CharField(max_length=64, blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = models.Manager.from_queryset(AuditEventQuerySet)()

    class Meta:
        ordering = ["-seq"]
        indexes = [
            models.Index(fields=["object_type", "object_id", "seq"]),
            models.Index(fields=["actor_username", "seq"]),
            models.Index(fields=["product_id", "seq"]),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.verb} {self.object_type}:{self.object_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ApplicationError("append_only", "Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ApplicationError("append_only", "Audit events are append-only.")

    def hashed_content(self) -> dict:
        return {
            "seq": self.seq,
            "at": self.at.isoformat(),
            "actor_username": self.actor_username,
            "verb": self.verb,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "product_id": str(self.product_id) if self.product_id else None,
            "before": self.before,
            "after": self.after,
            "ip_address": self.ip_address,
            "request_id": self.request_id,
        }

    def compute_hash(self, prev_hash: str) -> str:
        return content_hash({"prev": prev_hash, "event": self.hashed_content()})


class AuditChainHead(models.Model):
    """A single row: the newest event of the chain."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_seq = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self) -> str:
        return f"head #{self.last_seq}"


class VerificationRun(models.Model):
    """A run of the chain verifier (from the page, the command or a Celery task)."""

    STATES = [("running", "running"), ("intact", "intact"), ("broken", "broken")]
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    state = models.CharField(max_length=16, choices=STATES, default="running")
    checked = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)
    first_bad_seq = models.BigIntegerField(null=True, blank=True)
    problem = models.TextField(blank=True)
    kind = models.CharField(
        max_length=32,
        blank=True,
        help_text="The first problem's kind (altered, deleted, inserted, reordered, "
        "bad_signature, checkpoint_mismatch, truncated); empty when intact.",
    )
    checkpoints_checked = models.IntegerField(default=0)
    anchored_seq = models.BigIntegerField(
        null=True, blank=True, help_text="The newest signed checkpoint that verified."
    )
    notes = models.TextField(blank=True, help_text="Information that is not a failure.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"verification {self.pk} {self.state}"


class AuditCheckpointQuerySet(GovernedQuerySet):
    pass


class AuditCheckpoint(models.Model):
    """A signed anchor of the chain: the newest event's ``seq`` and ``hash`` at time ``at``.

    Written every ``AUDIT_CHECKPOINT_EVERY`` events (in the appending transaction) and by the
    ``audit.checkpoint`` beat task for events left unanchored for about an hour. The signature
    (Ed25519, key outside the database) covers ``apps.audit.ed25519.checkpoint_payload``; a
    rewrite of the chain up to ``seq``, however self-consistent, no longer matches
    ``head_hash``, and a forged ``head_hash`` no longer matches the signature.
    """

    seq = models.BigIntegerField(unique=True)
    head_hash = models.CharField(max_length=64)
    at = models.DateTimeField()
    key_id = models.CharField(max_length=32)
    signature = models.CharField(max_length=128)
    events = models.BigIntegerField(default=0, help_text="Events since the previous checkpoint.")

    objects = models.Manager.from_queryset(AuditCheckpointQuerySet)()

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"checkpoint #{self.seq}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ApplicationError("append_only", "Audit checkpoints are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ApplicationError("append_only", "Audit checkpoints are append-only.")

    @property
    def at_iso(self) -> str:
        return self.at.isoformat()

    def payload(self) -> bytes:
        from .ed25519 import checkpoint_payload

        return checkpoint_payload(self.seq, self.head_hash, self.at_iso, self.key_id)

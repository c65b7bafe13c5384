"""``audit_record`` is the one way an event enters the trail; ``chain_verify`` checks it."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.utils import timezone

from apps.core.hashing import to_jsonable
from apps.core.logging import request_id_var

from .models import GENESIS_HASH, AuditChainHead, AuditEvent, VerificationRun


def _object_type(obj: Model | None) -> str:
    return obj._meta.label_lower if obj is not None else ""


def audit_record(
    *,
    actor: Any,
    verb: str,
    obj: Model | None = None,
    before: dict | None = None,
    after: dict | None = None,
    product_id: Any = None,
    object_type: str | None = None,
    object_id: str | None = None,
    object_repr: str | None = None,
    ip_address: str = "",
) -> AuditEvent:
    """Append one event to the chain, inside the caller's transaction.

    ``actor`` is a user, or None for the system; the username is kept even if the user is later
    deleted. ``product_id`` files the event under a product for the auditor's filters.
    """
    with transaction.atomic():
        head, _ = AuditChainHead.objects.select_for_update().get_or_create(id=1)
        if actor is not None and getattr(actor, "pk", None):
            actor_obj, actor_name = actor, actor.get_username()
        else:
            actor_obj, actor_name = None, actor if isinstance(actor, str) else "system"
        event = AuditEvent(
            seq=head.last_seq + 1,
            at=timezone.now(),
            actor=actor_obj,
            actor_username=actor_name,
            verb=verb,
            object_type=object_type if object_type is not None else _object_type(obj),
            object_id=object_id if object_id is not None else (str(obj.pk) if obj else ""),
            object_repr=(object_repr if object_repr is not None else (str(obj) if obj else ""))[
                :200
            ],
            product_id=product_id,
            before=to_jsonable(before) if before is not None else None,
            after=to_jsonable(after) if after is not None else None,
            ip_address=ip_address,
            request_id="" if request_id_var.get() == "-" else request_id_var.get(),
        )
        event.hash = event.compute_hash(head.last_hash)
        event.prev_hash = head.last_hash
        event.save(force_insert=True)
        head.last_seq = event.seq
        head.last_hash = event.hash
        head.save(update_fields=["last_seq", "last_hash"])
    return event


def audit_changes(
    *, actor: Any, verb: str, obj: Model, before: dict, after: dict, product_id: Any = None
) -> AuditEvent | None:
    """Record an update as the fields that changed, old and new; nothing when none did."""
    changed = [key for key in after if after[key] != before.get(key)]
    if not changed:
        return None
    return audit_record(
        actor=actor,
        verb=verb,
        obj=obj,
        product_id=product_id,
        before={key: before.get(key) for key in changed},
        after={key: after[key] for key in changed},
    )


@dataclass(frozen=True)
class ChainReport:
    intact: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


def _events(batch: int = 2000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = list(AuditEvent.objects.filter(seq__gt=last).order_by("seq")[:batch])
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def chain_verify(*, progress: Callable[[int, int], None] | None = None) -> ChainReport:
    """Recompute every hash in order; name the first event that does not fit."""
    total = AuditEvent.objects.count()
    prev_hash = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for event in _events():
        if event.seq != expected_seq:
            return ChainReport(
                False,
                checked,
                expected_seq,
                f"event #{expected_seq} is missing (next is #{event.seq})",
            )
        if event.prev_hash != prev_hash:
            return ChainReport(
                False,
                checked,
                event.seq,
                f"event #{event.seq} does not link to the event before it",
            )
        if event.compute_hash(prev_hash) != event.hash:
            return ChainReport(
                False,
                checked,
                event.seq,
                f"event #{event.seq} was altered: its content does not match its hash",
            )
        prev_hash = event.hash
        expected_seq += 1
        checked += 1
        if progress and checked % 1000 == 0:
            progress(checked, total)
    head = AuditChainHead.objects.filter(id=1).first()
    head_seq, head_hash = (head.last_seq, head.last_hash) if head else (0, GENESIS_HASH)
    if head_seq != checked or head_hash != prev_hash:
        return ChainReport(
            False,
            checked,
            checked + 1,
            f"the chain ends at #{checked} but its head records #{head_seq}: "
            "events were removed from the end",
        )
    if progress:
        progress(checked, total)
    return ChainReport(True, checked)


def verification_run(*, run_id: int) -> VerificationRun:
    """Run the verifier for a VerificationRun row, saving progress as it goes."""
    run = VerificationRun.objects.get(pk=run_id)
    run.total = AuditEvent.objects.count()
    run.save(update_fields=["total"])

    def progress(checked: int, total: int) -> None:
        VerificationRun.objects.filter(pk=run_id).update(checked=checked, total=total)

    report = chain_verify(progress=progress)
    run.refresh_from_db()
    run.checked = report.checked
    run.state = "intact" if report.intact else "broken"
    run.first_bad_seq = report.first_bad_seq
    run.problem = report.problem
    run.finished_at = timezone.now()
    run.save()
    return run

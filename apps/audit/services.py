"""``audit_record`` is the one way an event enters the trail; ``chain_verify`` checks it.

Every ``AUDIT_CHECKPOINT_EVERY`` events ``audit_record`` also signs a checkpoint (see
``apps.audit.checkpoints``); ``chain_verify`` checks the chain's hashes and links and every
checkpoint's signature and head hash, and names the first problem.
"""

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Model
from django.utils import timezone

from apps.core.exceptions import Forbidden
from apps.core.hashing import to_jsonable
from apps.core.logging import request_id_var

from . import ed25519, signing
from .checkpoints import checkpoint_due_after_append, checkpoint_every, checkpoint_write
from .models import GENESIS_HASH, AuditChainHead, AuditCheckpoint, AuditEvent, VerificationRun


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
        if checkpoint_due_after_append(event.seq):
            checkpoint_write(head=head)
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


# --- verification ------------------------------------------------------------------------------

# The roles that may run the verifier (names of ``apps.accounts.roles``; audit sits below
# accounts, so it names them rather than importing them).
VERIFY_ROLES = ("auditor", "admin")

ALTERED = "altered"
DELETED = "deleted"
INSERTED = "inserted"
REORDERED = "reordered"
BAD_SIGNATURE = "bad_signature"
CHECKPOINT_MISMATCH = "checkpoint_mismatch"
TRUNCATED = "truncated"
PROBLEM_KINDS = (
    ALTERED,
    DELETED,
    INSERTED,
    REORDERED,
    BAD_SIGNATURE,
    CHECKPOINT_MISMATCH,
    TRUNCATED,
)
PROGRESS_EVERY = 1000
RENUMBER_PROBE = 8  # how far a renumbered event's original seq is looked for


@dataclass(frozen=True)
class ChainReport:
    """What the verifier found. ``kind``/``first_bad_seq``/``problem`` name the first problem
    (empty when intact); ``notes`` are information, not failures (events not yet anchored)."""

    intact: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""
    kind: str = ""
    total: int = 0
    head_seq: int = 0
    checkpoints_checked: int = 0
    checkpoints_total: int = 0
    anchored_seq: int | None = None
    unanchored: int = 0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["notes"] = list(self.notes)
        return data


class _Broken(Exception):
    def __init__(self, kind: str, seq: int, message: str) -> None:
        super().__init__(message)
        self.kind, self.seq, self.message = kind, seq, message


def _events(*, upto: int, batch: int = 2000) -> Iterator[AuditEvent]:
    last = None
    while True:
        rows = AuditEvent.objects.filter(seq__lte=upto)
        if last is not None:
            rows = rows.filter(seq__gt=last)
        rows = list(rows.order_by("seq")[:batch])
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def _as_seq(event: AuditEvent, seq: int) -> AuditEvent:
    clone = AuditEvent(**{f.attname: getattr(event, f.attname) for f in AuditEvent._meta.fields})
    clone.seq = seq
    return clone


def _broken_link(event: AuditEvent, running: str) -> _Broken:
    """Name what happened when ``event`` does not link to the verified event before it."""
    s = event.seq
    if event.compute_hash(running) == event.hash:
        return _Broken(
            ALTERED, s, f"event #{s} was altered: its link to the event before it was changed"
        )
    linked = AuditEvent.objects.filter(hash=event.prev_hash).values_list("seq", flat=True).first()
    if linked is not None and linked >= s:
        return _Broken(
            REORDERED,
            s,
            f"event #{s} was reordered: it links to event #{linked}, which now comes after it",
        )
    if linked is not None:
        first = linked + 1
        return _Broken(
            INSERTED,
            first,
            f"event {_span(first, s - 1)} was inserted: event #{s} links to #{linked}, "
            "the event before it",
        )
    if event.compute_hash(event.prev_hash) == event.hash:
        after = AuditEvent.objects.filter(seq__gt=s).order_by("seq").first()
        if after is not None and after.prev_hash == running:
            return _Broken(
                INSERTED,
                s,
                f"event #{s} was inserted: event #{after.seq} links to the event before it",
            )
        if s > 1:
            return _Broken(
                ALTERED,
                s - 1,
                f"event #{s - 1} was altered and its hash recomputed: event #{s} still links "
                "to its original hash",
            )
    else:
        for original in range(s + 1, s + 1 + RENUMBER_PROBE):
            if _as_seq(event, original).compute_hash(event.prev_hash) == event.hash:
                return _Broken(
                    DELETED,
                    s,
                    f"event #{s} is missing: events were deleted and the later ones "
                    f"renumbered (the event now at #{s} was #{original})",
                )
    return _Broken(
        ALTERED,
        s,
        f"event #{s} was altered: it does not link to the event before it and its content "
        "does not match its hash",
    )


def _public_keys() -> dict:
    return {kid: ed25519.load_public_key(pem) for kid, pem in signing.public_keys().items()}


def _check_signature(checkpoint: AuditCheckpoint, keys: dict) -> None:
    key = keys.get(checkpoint.key_id)
    if key is None:
        raise _Broken(
            BAD_SIGNATURE,
            checkpoint.seq,
            f"checkpoint #{checkpoint.seq} names signing key {checkpoint.key_id or '(none)'}, "
            "which is neither the current key nor one of AUDIT_PUBLIC_KEYS_EXTRA",
        )
    if not ed25519.verify_with_key(key, checkpoint.payload(), checkpoint.signature):
        raise _Broken(
            BAD_SIGNATURE,
            checkpoint.seq,
            f"checkpoint #{checkpoint.seq} has a bad signature: the checkpoint was forged or "
            "altered after it was signed",
        )


def _span(first: int, last: int) -> str:
    return f"#{first}" if first == last else f"#{first} to #{last}"


def chain_verify(*, progress: Callable[[int, int], None] | None = None) -> ChainReport:
    """Recompute every hash in order and check every signed checkpoint; name the first
    problem (its kind, seq and a sentence)."""
    # Checkpoints first, then the head: a checkpoint is written under the head's lock, so every
    # checkpoint read here covers an event at or below the head read after it.
    checkpoints = list(AuditCheckpoint.objects.order_by("seq"))
    head = AuditChainHead.objects.filter(id=1).first()
    head_seq, head_hash = (head.last_seq, head.last_hash) if head else (0, GENESIS_HASH)
    total = AuditEvent.objects.filter(seq__lte=head_seq).count()
    keys = _public_keys()
    prev_hash = GENESIS_HASH
    checked = 0
    verified_cps = 0
    anchored: AuditCheckpoint | None = None
    pending = iter(checkpoints)
    cp = next(pending, None)

    def report(broken: _Broken | None = None, notes: tuple[str, ...] = ()) -> ChainReport:
        last = anchored.seq if anchored else 0
        return ChainReport(
            intact=broken is None,
            checked=checked,
            first_bad_seq=broken.seq if broken else None,
            problem=broken.message if broken else "",
            kind=broken.kind if broken else "",
            total=total,
            head_seq=head_seq,
            checkpoints_checked=verified_cps,
            checkpoints_total=len(checkpoints),
            anchored_seq=anchored.seq if anchored else None,
            unanchored=max(0, checked - last),
            notes=notes,
        )

    try:
        for event in _events(upto=head_seq):
            expected = checked + 1
            if event.seq != expected:
                raise _Broken(
                    DELETED,
                    expected,
                    f"event {_span(expected, event.seq - 1)} was deleted "
                    f"(the chain goes from #{checked} to #{event.seq})",
                )
            if event.prev_hash != prev_hash:
                raise _broken_link(event, prev_hash)
            if event.compute_hash(prev_hash) != event.hash:
                raise _Broken(
                    ALTERED,
                    event.seq,
                    f"event #{event.seq} was altered: its content does not match its hash",
                )
            prev_hash = event.hash
            checked += 1
            while cp is not None and cp.seq <= event.seq:
                _check_signature(cp, keys)
                if cp.seq != event.seq or cp.head_hash != event.hash:
                    since = (anchored.seq if anchored else 0) + 1
                    raise _Broken(
                        CHECKPOINT_MISMATCH,
                        cp.seq,
                        f"the chain no longer matches checkpoint #{cp.seq} signed "
                        f"{cp.at_iso}: events {_span(since, cp.seq)} were rewritten (hashes "
                        "recomputed to look consistent)",
                    )
                verified_cps += 1
                anchored = cp
                cp = next(pending, None)
            if progress and checked % PROGRESS_EVERY == 0:
                progress(checked, total)
        beyond = [cp, *pending] if cp is not None else []
        for later in beyond:
            _check_signature(later, keys)
        if checked < head_seq:
            raise _Broken(
                TRUNCATED,
                checked + 1,
                f"the chain ends at #{checked} but its head records #{head_seq}: events "
                f"{_span(checked + 1, head_seq)} were removed from the end",
            )
        if beyond:
            latest = beyond[-1]
            raise _Broken(
                TRUNCATED,
                checked + 1,
                f"truncated after checkpoint seq {anchored.seq if anchored else 0}: the chain "
                f"ends at #{checked} but checkpoint #{latest.seq} was signed {latest.at_iso}; "
                f"events {_span(checked + 1, latest.seq)} (at least) were deleted and the head "
                "rewound",
            )
        if head_hash != prev_hash:
            raise _Broken(
                ALTERED,
                checked,
                f"event #{checked} was altered: it does not match the hash the chain head records",
            )
        newest = AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0
        head_now = AuditChainHead.objects.filter(id=1).values_list("last_seq", flat=True).first()
        if newest > (head_now or 0):
            raise _Broken(
                INSERTED,
                (head_now or 0) + 1,
                f"event {_span((head_now or 0) + 1, newest)} was inserted after the chain head "
                f"(#{head_now or 0}), behind the log's back",
            )
    except _Broken as broken:
        if progress:
            progress(checked, total)
        return report(broken)
    if progress:
        progress(checked, total)
    return report(notes=_notes(checked, anchored, {c.seq for c in checkpoints}))


def _notes(checked: int, anchored: AuditCheckpoint | None, signed: set[int]) -> tuple[str, ...]:
    notes = []
    last = anchored.seq if anchored else 0
    if checked > last:
        notes.append(
            f"events {_span(last + 1, checked)} are not yet anchored by a signed checkpoint "
            "(one is signed every "
            f"{checkpoint_every() or '(off)'} events and for older events about hourly)"
        )
    every = checkpoint_every()
    if every:
        missing = [m for m in range(every, checked + 1, every) if m not in signed]
        if missing:
            shown = ", ".join(f"#{m}" for m in missing[:5])
            notes.append(
                f"no checkpoint at {shown}{' …' if len(missing) > 5 else ''} although one is "
                f"signed every {every} events: checkpoints were deleted, or "
                "AUDIT_CHECKPOINT_EVERY changed"
            )
    return tuple(notes)


def may_verify(user: Any) -> bool:
    """Auditors, admins and superusers run the verifier and read checkpoints."""
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    return bool(user.is_superuser or user.has_role(*VERIFY_ROLES))


def task_queue() -> str | None:
    """The Celery queue verification runs go to (``AUDIT_TASK_QUEUE``; default: Celery's)."""
    return getattr(settings, "AUDIT_TASK_QUEUE", None) or None


def verification_start(*, actor: Any) -> VerificationRun:
    """Start a verification run; the worker picks it up when the transaction commits."""
    if not may_verify(actor):
        raise Forbidden("forbidden", "Only auditors, admins and superusers verify the audit chain.")
    from .tasks import verify_chain  # tasks import this module

    with transaction.atomic():
        run = VerificationRun.objects.create(requested_by=actor)
        audit_record(actor=actor, verb="audit.verification_started", obj=run)
        queue = task_queue()
        options = {"queue": queue} if queue else {}
        transaction.on_commit(lambda: verify_chain.apply_async(args=[run.pk], **options))
    return run


def verification_run(*, run_id: int) -> VerificationRun:
    """Run the verifier for a VerificationRun row, saving progress as it goes."""
    run = VerificationRun.objects.get(pk=run_id)
    if run.state != "running":  # a redelivered task: the run is done
        return run
    run.total = AuditEvent.objects.count()
    run.save(update_fields=["total"])

    def progress(checked: int, total: int) -> None:
        VerificationRun.objects.filter(pk=run_id).update(checked=checked, total=total)

    report = chain_verify(progress=progress)
    with transaction.atomic():
        run = VerificationRun.objects.select_for_update().get(pk=run_id)
        run.checked = report.checked
        run.total = report.total
        run.state = "intact" if report.intact else "broken"
        run.first_bad_seq = report.first_bad_seq
        run.problem = report.problem
        run.kind = report.kind
        run.checkpoints_checked = report.checkpoints_checked
        run.anchored_seq = report.anchored_seq
        run.notes = "\n".join(report.notes)
        run.finished_at = timezone.now()
        run.save()
        audit_record(
            actor=None,
            verb="audit.chain_verified" if report.intact else "audit.chain_broken",
            obj=run,
            after={
                "state": run.state,
                "checked": report.checked,
                "kind": report.kind,
                "first_bad_seq": report.first_bad_seq,
                "anchored_seq": report.anchored_seq,
            },
        )
    return run

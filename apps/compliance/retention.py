"""Retention: what is kept for ever, and the payloads that are not.

- Audit events and history rows are never deleted: ``AuditEvent`` refuses ``delete()`` and bulk
  deletes; every django-simple-history model refuses ORM deletes of its rows
  (``history_delete_guard``, connected in ``ComplianceConfig.ready``).
- A product that has (or ever had) a release is never deleted, only retired
  (``product_delete_guard``; ``Release.product`` is ``PROTECT`` as well).
- Payloads (prompt and output text) follow ``PAYLOAD_RETENTION_DAYS`` (at least
  ``PAYLOAD_RETENTION_FLOOR_DAYS``, 180): ``purge_payloads`` clears the payloads older than
  that and keeps every figure of the call or run (tokens, cost, latency, outcome, pass/fail).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from celery import current_app, shared_task
from django.conf import settings
from django.core import checks
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.exceptions import Conflict

FLOOR_DAYS = 180
BATCH = 1000


def floor_days() -> int:
    return max(FLOOR_DAYS, int(getattr(settings, "PAYLOAD_RETENTION_FLOOR_DAYS", FLOOR_DAYS)))


def retention_days() -> int:
    """The retention in force: the setting, never below the floor (a lower value is refused at
    start-up by the system check; here it is clamped so nothing younger is ever purged)."""
    return max(int(settings.PAYLOAD_RETENTION_DAYS), floor_days())


def check_retention_setting(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    value = getattr(settings, "PAYLOAD_RETENTION_DAYS", None)
    if not isinstance(value, int) or isinstance(value, bool) or value < floor_days():
        return [
            checks.Error(
                f"PAYLOAD_RETENTION_DAYS is {value!r}; payloads are kept at least "
                f"{floor_days()} days.",
                hint=f"Set PAYLOAD_RETENTION_DAYS to {floor_days()} or more (default 365).",
                id="compliance.E001",
            )
        ]
    return []


# --- the purge ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PurgeKind:
    """One kind of row holding payloads: which rows are old, what is cleared, what 'empty' is."""

    key: str
    model_label: str
    older: str  # the lookup compared with the cutoff
    cleared: dict[str, Any]
    has_payload: Q

    @property
    def model(self):
        from django.apps import apps

        return apps.get_model(self.model_label)


def _kinds() -> list[PurgeKind]:
    return [
        PurgeKind(
            "provider_calls",
            "gateway.ProviderCall",
            "created_at__lt",
            {"request_messages": None, "response_text": ""},
            Q(payload_purged_at__isnull=True)
            & (Q(request_messages__isnull=False) | ~Q(response_text="")),
        ),
        PurgeKind(
            "playground_runs",
            "playground.PlaygroundRun",
            "created_at__lt",
            {"output": "", "messages": [], "variables": {}},
            ~Q(output="") | ~Q(messages=[]) | ~Q(variables={}),
        ),
        PurgeKind(
            "batch_items",
            "playground.BatchItem",
            "batch__created_at__lt",
            {"output": "", "variables": {}},
            ~Q(output="") | ~Q(variables={}),
        ),
        PurgeKind(
            "eval_results",
            "evaluations.EvalResult",
            "created_at__lt",
            {"output": ""},
            ~Q(output=""),
        ),
    ]


@dataclass(frozen=True)
class PurgeReport:
    cutoff: dt.datetime
    retention_days: int
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    audit_seq: int | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _purge_kind(kind: PurgeKind, cutoff: dt.datetime, now: dt.datetime, dry_run: bool) -> int:
    model = kind.model
    qs = model._default_manager.filter(**{kind.older: cutoff}).filter(kind.has_payload)
    if dry_run:
        return qs.count()
    values = dict(kind.cleared)
    if kind.key == "provider_calls":
        values["payload_purged_at"] = now
    done = 0
    while True:
        pks = list(qs.order_by("pk").values_list("pk", flat=True)[:BATCH])
        if not pks:
            return done
        with transaction.atomic():
            done += model._default_manager.filter(pk__in=pks).update(**values)


def purge_payloads(
    *, now: dt.datetime | None = None, dry_run: bool = False, actor: Any = None
) -> PurgeReport:
    """Clear the payloads older than the retention; keep every row and all its figures.

    In batches of ``BATCH`` rows (each its own transaction), then ONE audit event
    ``payloads.purged`` with the cutoff and the count per kind (every real run records one, so
    the trail shows the purge ran; a dry run records nothing). Idempotent: a second run finds
    nothing left to clear.
    """
    now = now or timezone.now()
    days = retention_days()
    cutoff = now - dt.timedelta(days=days)
    counts = {kind.key: _purge_kind(kind, cutoff, now, dry_run) for kind in _kinds()}
    seq = None
    if not dry_run:
        with transaction.atomic():
            event = audit_record(
                actor=actor,
                verb="payloads.purged",
                object_type="compliance.payloads",
                object_id="",
                object_repr=f"payloads before {cutoff:%Y-%m-%d %H:%M}",
                after={"cutoff": cutoff, "retention_days": days, "counts": counts},
            )
            seq = event.seq
    return PurgeReport(cutoff, days, dry_run, counts, seq)


# --- things never deleted ------------------------------------------------------------------------


def product_delete_guard(sender, instance, **kwargs) -> None:
    """pre_delete of ``catalog.Product``: a product that has or ever had a release is retired,
    never deleted."""
    from apps.releases.models import Release

    if (
        Release.objects.filter(product_id=instance.pk).exists()
        or Release.history.filter(product_id=instance.pk).exists()
    ):
        raise Conflict(
            "protected",
            f"Product {instance.slug} has releases: it can be retired, never deleted.",
        )


def history_delete_guard(sender, instance, **kwargs) -> None:
    """pre_delete of every historical model: history rows are never deleted."""
    raise Conflict(
        "append_only",
        f"{sender._meta.verbose_name} rows are history: they are never deleted.",
    )


# --- the weekly run under celery beat --------------------------------------------------------


@shared_task(bind=True, acks_late=True, name="compliance.purge_payloads")
def purge_payloads_task(self) -> dict:
    """Thin wrapper: ``purge_payloads`` (idempotent, so a redelivery clears nothing more)."""
    report = purge_payloads()
    return {"cutoff": report.cutoff.isoformat(), "counts": report.counts}


current_app.add_periodic_task(
    settings.PAYLOAD_PURGE_EVERY_SECONDS,
    purge_payloads_task.s(),
    name="compliance: purge old payloads",
)

"""Usage rollups: the records of each subscription summed per UTC hour and per UTC day.

``rollup_usage`` recomputes, in one transaction, the hour buckets that records may have touched
since the last run (from the watermark minus ``LATE_RECORDS``, since the gateway writes its
records in batches shortly after the calls) and the day buckets holding them (a day is the sum of
its hours). Each bucket is compared with its stored row: a row is created, updated or deleted
only when its figures differ, so a rerun changes nothing. The watermark
(``UsageRollupState.covered_until``) tells the charts where the raw records take over.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from .models import RollupPeriod, UsageRecord, UsageRollup, UsageRollupState
from .selectors import as_utc, bucket_start, record_aggregates, rollup_aggregates, trunc_bucket

# Records are written off the response path in batches: one created a little before the last
# run may have been inserted after it. Each run looks back this far past its watermark.
LATE_RECORDS = timedelta(minutes=5)

FIGURES = (
    "requests",
    "errors",
    "rate_limited",
    "tokens_in",
    "tokens_out",
    "cost",
    "latency_ms_sum",
    "latency_ms_max",
)


@dataclass(frozen=True)
class RollupReport:
    since: datetime | None
    covered_until: datetime
    created: int
    updated: int
    deleted: int


def _figures(row: dict) -> dict:
    return {
        "requests": row["n_requests"] or 0,
        "errors": row["n_errors"] or 0,
        "rate_limited": row["n_rate_limited"] or 0,
        "tokens_in": row["s_tokens_in"] or 0,
        "tokens_out": row["s_tokens_out"] or 0,
        "cost": Decimal(row["s_cost"] or 0).quantize(Decimal("0.00000001")),
        "latency_ms_sum": row["s_latency"] or 0,
        "latency_ms_max": row["m_latency"] or 0,
    }


def _sync(period: str, start: datetime, computed: dict[tuple, dict]) -> tuple[int, int, int]:
    """Make the stored rollups of ``period`` from ``start`` on equal ``computed``."""
    stored = {
        (r.subscription_id, as_utc(r.start)): r
        for r in UsageRollup.objects.filter(period=period, start__gte=start)
    }
    create, update = [], []
    for (sub_id, at), data in computed.items():
        figures = data["figures"]
        row = stored.pop((sub_id, at), None)
        if row is None:
            create.append(
                UsageRollup(
                    subscription_id=sub_id,
                    api_id=data["api_id"],
                    application_id=data["application_id"],
                    period=period,
                    start=at,
                    **figures,
                )
            )
        elif any(getattr(row, k) != v for k, v in figures.items()):
            for k, v in figures.items():
                setattr(row, k, v)
            update.append(row)
    UsageRollup.objects.bulk_create(create, batch_size=500)
    if update:
        now = timezone.now()
        for row in update:
            row.updated_at = now
        UsageRollup.objects.bulk_update(update, [*FIGURES, "updated_at"], batch_size=500)
    if stored:
        UsageRollup.objects.filter(pk__in=[r.pk for r in stored.values()]).delete()
    return len(create), len(update), len(stored)


def rollup_usage(*, since: datetime | None = None) -> RollupReport:
    """Recompute the hour and day rollups touched since the last run (or since ``since``)."""
    now = timezone.now()
    with transaction.atomic():
        state, _ = UsageRollupState.objects.select_for_update().get_or_create(pk=1)
        if since is None and state.covered_until is not None:
            since = state.covered_until - LATE_RECORDS
        if since is None:  # the first run: everything there is
            since = (
                UsageRecord.objects.order_by("created_at")
                .values_list("created_at", flat=True)
                .first()
            )
        created = updated = deleted = 0
        if since is not None:
            hour0 = bucket_start(since, RollupPeriod.HOUR)
            day0 = bucket_start(since, RollupPeriod.DAY)
            hours = {
                (row["subscription_id"], as_utc(row["bucket"])): {
                    "api_id": row["api_id"],
                    "application_id": row["application_id"],
                    "figures": _figures(row),
                }
                for row in UsageRecord.objects.filter(created_at__gte=hour0)
                .annotate(bucket=trunc_bucket(RollupPeriod.HOUR, "created_at"))
                .values("subscription_id", "api_id", "application_id", "bucket")
                .annotate(**record_aggregates())
                .order_by()
            }
            counts = _sync(RollupPeriod.HOUR, hour0, hours)
            days = {
                (row["subscription_id"], as_utc(row["bucket"])): {
                    "api_id": row["api_id"],
                    "application_id": row["application_id"],
                    "figures": _figures(row),
                }
                for row in UsageRollup.objects.filter(period=RollupPeriod.HOUR, start__gte=day0)
                .annotate(bucket=trunc_bucket(RollupPeriod.DAY, "start"))
                .values("subscription_id", "api_id", "application_id", "bucket")
                .annotate(**rollup_aggregates())
                .order_by()
            }
            more = _sync(RollupPeriod.DAY, day0, days)
            created, updated, deleted = (a + b for a, b in zip(counts, more, strict=True))
        state.covered_until = now
        state.save()
    return RollupReport(
        since=since, covered_until=now, created=created, updated=updated, deleted=deleted
    )

"""Reads with rules: who sees which providers and which provider calls.

Admins and auditors see every provider; every other signed-in user sees the enabled ones (a
disabled provider is then a 404). No read ever returns a secret: only whether one is set.

A provider call is seen by who may see its product: the members of the owner team (guardian's
object scope, like releases), and auditors and admins everywhere. A call without a product (a
direct call to a provider, from the playground or a script) is seen by gateway admins only.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import (
    Aggregate,
    Count,
    DateField,
    DecimalField,
    FloatField,
    Q,
    QuerySet,
    Sum,
    Value,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.roles import ADMIN, AUDITOR
from apps.catalog.models import Product
from apps.catalog.selectors import product_list_for

from .models import CallOutcome, Provider, ProviderCall, ProviderPrice
from .services import is_gateway_admin


def sees_all_providers(user: User) -> bool:
    return bool(user.is_superuser or user.has_role(ADMIN, AUDITOR))


def provider_list_for(*, user: User) -> QuerySet[Provider]:
    qs = Provider.objects.select_related("created_by").order_by("slug")
    if sees_all_providers(user):
        return qs
    return qs.filter(enabled=True)


def provider_price_list_for(*, user: User, provider: Provider) -> QuerySet[ProviderPrice]:
    """The prices of a provider ``user`` may see (call with one from ``provider_list_for``)."""
    return (
        ProviderPrice.objects.filter(provider=provider)
        .select_related("provider")
        .order_by("provider_model")
    )


# --- provider calls ----------------------------------------------------------------------------


def provider_call_list_for(*, user: User) -> QuerySet[ProviderCall]:
    """The calls ``user`` may see, newest first, with what a list row shows (one query a page).

    Filtering by product, release, provider or outcome and a time range is answered by the
    ``(<fk>, -created_at)`` indexes.
    """
    qs = ProviderCall.objects.select_related("product", "release", "provider").order_by(
        "-created_at", "-pk"
    )
    if is_gateway_admin(user):
        return qs
    if user.has_role(AUDITOR) or user.has_perm("catalog.view_product"):
        return qs.filter(product__isnull=False)
    return qs.filter(product__in=product_list_for(user=user).values("pk"))


@dataclass(frozen=True)
class CallSummary:
    calls: int
    errors: int
    tokens_in: int
    tokens_out: int
    cost: Decimal

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None


def provider_call_summary(calls: QuerySet[ProviderCall]) -> CallSummary:
    """Totals of a (filtered) call queryset, in one aggregate query."""
    row = calls.order_by().aggregate(
        calls=Count("pk"),
        errors=Count("pk", filter=Q(outcome=CallOutcome.ERROR)),
        tokens_in=Coalesce(Sum("tokens_in"), 0),
        tokens_out=Coalesce(Sum("tokens_out"), 0),
        cost=Coalesce(Sum("cost"), Value(Decimal(0)), output_field=DecimalField()),
    )
    return CallSummary(
        calls=row["calls"],
        errors=row["errors"],
        tokens_in=row["tokens_in"],
        tokens_out=row["tokens_out"],
        cost=Decimal(row["cost"] or 0),
    )


# --- per-day statistics of a product's calls (the product page's charts) -------------------------


class PercentileCont(Aggregate):
    """PostgreSQL's ``percentile_cont(f) WITHIN GROUP (ORDER BY expr)``: an interpolated
    percentile, the same as ``percentile_cont`` below computes in Python."""

    function = "PERCENTILE_CONT"
    name = "PercentileCont"
    template = "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, fraction: float, **extra):
        fraction = float(fraction)
        if not 0 <= fraction <= 1:
            raise ValueError("A percentile is a fraction between 0 and 1.")
        super().__init__(expression, fraction=repr(fraction), **extra)


def percentile_cont(ordered: Sequence[float], fraction: float) -> float | None:
    """The ``fraction`` percentile of ascending ``ordered`` values, interpolated linearly between
    the closest ranks (PostgreSQL's ``percentile_cont``); None for no values."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class DayStats:
    day: dt.date
    calls: int
    errors: int
    cost: Decimal
    p95_ms: float | None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.calls if self.calls else None


@dataclass(frozen=True)
class DailyCallStats:
    days: list[DayStats]  # oldest first, one per day of the window, zeros where no calls
    total: DayStats  # the whole window (``day`` is its first day)

    @property
    def empty(self) -> bool:
        return self.total.calls == 0


P95 = 0.95


def provider_call_daily_stats(
    *, product: Product, days: int = 7, now: dt.datetime | None = None
) -> DailyCallStats:
    """Calls, errors, cost and p95 latency of ``product``'s calls per day, the last ``days``
    days (today included, in the current time zone).

    PostgreSQL: one query (per-day rows and the window's total row, ``UNION ALL``, with
    ``percentile_cont``). Other databases: one ``GROUP BY`` query and one ordered query of the
    latencies, whose percentiles are computed here.
    """
    now = now or timezone.now()
    today = timezone.localdate(now)
    first = today - dt.timedelta(days=days - 1)
    start = timezone.make_aware(dt.datetime.combine(first, dt.time.min))
    end = timezone.make_aware(dt.datetime.combine(today + dt.timedelta(days=1), dt.time.min))
    base = ProviderCall.objects.filter(
        product=product, created_at__gte=start, created_at__lt=end
    ).order_by()
    aggregates = {
        "calls": Count("pk"),
        "errors": Count("pk", filter=Q(outcome=CallOutcome.ERROR)),
        "cost_sum": Sum("cost"),
    }
    by_day: dict[dt.date | None, dict] = {}
    daily = base.annotate(day=TruncDate("created_at")).values("day")
    if connection.vendor == "postgresql":
        aggregates["p95"] = PercentileCont("latency_ms", P95)
        whole = base.annotate(day=Value(None, output_field=DateField())).values("day")
        rows = daily.annotate(**aggregates).union(whole.annotate(**aggregates), all=True)
        for row in rows:
            by_day[row["day"]] = row
    else:
        for row in daily.annotate(**aggregates):
            by_day[row["day"]] = row
        latencies: dict[dt.date, list[int]] = defaultdict(list)
        for day, latency in daily.order_by("day", "latency_ms").values_list("day", "latency_ms"):
            latencies[day].append(latency)
        for day, row in by_day.items():
            row["p95"] = percentile_cont(latencies.get(day, []), P95)
        every = sorted(v for values in latencies.values() for v in values)
        by_day[None] = {
            "calls": sum(r["calls"] for r in by_day.values()),
            "errors": sum(r["errors"] for r in by_day.values()),
            "cost_sum": sum((r["cost_sum"] or Decimal(0) for r in by_day.values()), Decimal(0)),
            "p95": percentile_cont(every, P95),
        }

    def stats(day: dt.date, row: dict | None) -> DayStats:
        if not row or not row["calls"]:
            return DayStats(day=day, calls=0, errors=0, cost=Decimal(0), p95_ms=None)
        p95 = row.get("p95")
        return DayStats(
            day=day,
            calls=row["calls"],
            errors=row["errors"],
            cost=Decimal(row["cost_sum"] or 0),
            p95_ms=float(p95) if p95 is not None else None,
        )

    window = [first + dt.timedelta(days=i) for i in range(days)]
    return DailyCallStats(
        days=[stats(day, by_day.get(day)) for day in window],
        total=stats(first, by_day.get(None)),
    )

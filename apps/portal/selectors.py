"""Reads of the developer portal, scoped to what a user may see (out of scope is a 404).

- APIs: published and deprecated ones are the catalog every signed-in user browses; drafts and
  retired ones are seen by the product's team (and auditors, superusers), who may see the
  product itself.
- Applications, subscriptions and keys are their owner's; a subscription is also seen by those
  who may decide it (the product managers and admins of the API's product team, superusers);
  auditors and superusers read everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Exists, Max, OuterRef, Q, QuerySet, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.utils import timezone
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

from apps.accounts.models import User
from apps.accounts.roles import ADMIN, AUDITOR, PRODUCT_MANAGER
from apps.catalog.models import Product

from .models import (
    APIKey,
    APIStatus,
    Application,
    Plan,
    PublishedAPI,
    RollupPeriod,
    Subscription,
    SubscriptionState,
    UsageOutcome,
    UsageRecord,
    UsageRollup,
    UsageRollupState,
)

# Roles of the API's product team that decide subscriptions.
APPROVER_ROLES = frozenset({PRODUCT_MANAGER, ADMIN})
PUBLIC_STATUSES = (APIStatus.PUBLISHED, APIStatus.DEPRECATED)


# --- permissions -----------------------------------------------------------------------------


def _product_perm(user: User, codename: str, ref: str) -> Q:
    """guardian's object permission ``codename`` on the product at ``ref``, as EXISTS."""
    via_group = get_group_obj_perms_model(Product).objects.filter(
        content_object=OuterRef(ref), group__user=user, permission__codename=codename
    )
    via_user = get_user_obj_perms_model(Product).objects.filter(
        content_object=OuterRef(ref), user=user, permission__codename=codename
    )
    return Q(Exists(via_group)) | Q(Exists(via_user))


def is_auditor(user: User) -> bool:
    return user.has_role(AUDITOR)


def sees_everything(user: User) -> bool:
    """Superusers and auditors read every portal object (auditors write none)."""
    return user.is_superuser or is_auditor(user)


def can_change_product(user: User, product: Product) -> bool:
    return user.is_superuser or user.has_perm("catalog.change_product", product)


def approver_team_ids(user: User) -> set:
    return {team_id for team_id, roles in user.team_roles().items() if roles & APPROVER_ROLES}


def can_decide(user: User, api: PublishedAPI) -> bool:
    """Whether ``user`` may approve, reject, suspend or resume subscriptions to ``api``: a
    superuser, or a product manager or admin of the team owning the API's product. (Nobody
    decides their own request: the services check that too.)"""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    return api.product.owner_team_id in approver_team_ids(user)


def approvers_of(api: PublishedAPI) -> list[User]:
    """Who is told about a new pending request: the team's approvers, or the superusers when
    the team has none."""
    team_users = list(
        User.objects.filter(
            is_active=True,
            memberships__team_id=api.product.owner_team_id,
            memberships__role__in=APPROVER_ROLES,
        ).distinct()
    )
    return team_users or list(User.objects.filter(is_active=True, is_superuser=True))


# --- APIs and plans --------------------------------------------------------------------------


def _apis() -> QuerySet[PublishedAPI]:
    return PublishedAPI.objects.select_related(
        "product", "product__owner_team", "release", "successor", "created_by"
    )


def api_catalog_for(*, user: User) -> QuerySet[PublishedAPI]:
    """The catalog: published and deprecated APIs for every signed-in user; drafts and retired
    ones too for those who can change the product."""
    qs = _apis()
    if user.is_superuser:
        return qs
    return qs.filter(
        Q(status__in=PUBLIC_STATUSES) | _product_perm(user, "change_product", "product")
    )


def api_list_for(*, user: User) -> QuerySet[PublishedAPI]:
    """Every API ``user`` may see: the catalog, plus all the APIs of the products they may see
    (the product's team, auditors), whatever their status."""
    qs = _apis()
    if user.is_superuser or user.has_perm("catalog.view_product"):
        return qs
    return qs.filter(Q(status__in=PUBLIC_STATUSES) | _product_perm(user, "view_product", "product"))


def plan_list_for(*, user: User) -> QuerySet[Plan]:
    """The plans of the APIs ``user`` may see."""
    return Plan.objects.select_related("api", "api__product", "created_by").filter(
        api__in=api_list_for(user=user).values("pk")
    )


# --- applications, subscriptions, keys -------------------------------------------------------


def application_list_for(*, user: User) -> QuerySet[Application]:
    qs = Application.objects.select_related("owner")
    if sees_everything(user):
        return qs
    return qs.filter(owner=user)


def _subscriptions() -> QuerySet[Subscription]:
    return Subscription.objects.select_related(
        "application",
        "application__owner",
        "api",
        "api__product",
        "plan",
        "requested_by",
        "decided_by",
    )


def subscription_list_for(*, user: User) -> QuerySet[Subscription]:
    """Subscriptions of the user's applications, and those the user may decide."""
    qs = _subscriptions()
    if sees_everything(user):
        return qs
    return qs.filter(
        Q(application__owner=user) | Q(api__product__owner_team_id__in=approver_team_ids(user))
    )


def subscription_queue_for(*, user: User) -> QuerySet[Subscription]:
    """Pending subscriptions ``user`` may decide, oldest first; never their own requests."""
    qs = _subscriptions().filter(state=SubscriptionState.PENDING).exclude(requested_by=user)
    if not user.is_superuser:
        qs = qs.filter(api__product__owner_team_id__in=approver_team_ids(user))
    return qs.order_by("created_at", "pk")


def subscription_queue_counts(*, user: User) -> list[dict[str, Any]]:
    """How many requests wait per API and plan: ``[{"api", "plan", "pending"}]`` (one query;
    ``api`` and ``plan`` are the objects)."""
    rows = list(
        subscription_queue_for(user=user)
        .order_by()
        .values("api_id", "plan_id")
        .annotate(pending=Count("pk"))
    )
    plans = {
        p.pk: p
        for p in Plan.objects.select_related("api", "api__product").filter(
            pk__in=[r["plan_id"] for r in rows]
        )
    }
    out = [
        {"api": plans[r["plan_id"]].api, "plan": plans[r["plan_id"]], "pending": r["pending"]}
        for r in rows
        if r["plan_id"] in plans
    ]
    return sorted(out, key=lambda r: (r["api"].slug, r["plan"].slug))


def key_list_for(*, user: User) -> QuerySet[APIKey]:
    qs = APIKey.objects.select_related(
        "application", "application__owner", "revoked_by", "created_by", "rotated_from"
    )
    if sees_everything(user):
        return qs
    return qs.filter(application__owner=user)


# --- impact of a change ----------------------------------------------------------------------


@dataclass(frozen=True)
class Impact:
    """What a new release of a product reaches: the live APIs that follow the product's current
    release (not pinned to a release) and their active subscriptions."""

    apis: list[PublishedAPI]
    active_subscriptions: int


def change_impact(*, product: Product) -> Impact:
    """An API pinned to a release (even the current one) keeps serving its pin when a change is
    implemented, so only the followers are reached, before and after the change alike."""
    qs = PublishedAPI.objects.filter(product=product, status__in=PUBLIC_STATUSES)
    apis = list(
        qs.filter(release__isnull=True)
        .annotate(
            active=Count("subscriptions", filter=Q(subscriptions__state=SubscriptionState.ACTIVE))
        )
        .order_by("slug")
    )
    return Impact(apis=apis, active_subscriptions=sum(api.active for api in apis))


# --- usage -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageBucket:
    start: datetime
    requests: int = 0
    errors: int = 0
    rate_limited: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)
    latency_avg_ms: float | None = None
    latency_max_ms: int | None = None


_STEP = {RollupPeriod.HOUR: timedelta(hours=1), RollupPeriod.DAY: timedelta(days=1)}


def bucket_start(at: datetime, period: str) -> datetime:
    """The UTC hour or day ``at`` falls in."""
    at = at.astimezone(UTC)
    if period == RollupPeriod.DAY:
        return at.replace(hour=0, minute=0, second=0, microsecond=0)
    return at.replace(minute=0, second=0, microsecond=0)


def record_aggregates() -> dict:
    """Sums of records, as the rollups keep them."""
    failed = Q(outcome__in=[UsageOutcome.ERROR, UsageOutcome.REJECTED])
    return {
        "n_requests": Count("pk"),
        "n_errors": Count("pk", filter=failed),
        "n_rate_limited": Count("pk", filter=Q(outcome=UsageOutcome.RATE_LIMITED)),
        "s_tokens_in": Sum("tokens_in"),
        "s_tokens_out": Sum("tokens_out"),
        "s_cost": Sum("cost"),
        "s_latency": Sum("latency_ms"),
        "m_latency": Max("latency_ms"),
    }


def rollup_aggregates() -> dict:
    """Sums of rollups (a day from its hours, a series bucket from its rows)."""
    return {
        "n_requests": Sum("requests"),
        "n_errors": Sum("errors"),
        "n_rate_limited": Sum("rate_limited"),
        "s_tokens_in": Sum("tokens_in"),
        "s_tokens_out": Sum("tokens_out"),
        "s_cost": Sum("cost"),
        "s_latency": Sum("latency_ms_sum"),
        "m_latency": Max("latency_ms_max"),
    }


class _Acc:
    __slots__ = ("cost", "errors", "lat_max", "lat_sum", "rate_limited", "requests", "tin", "tout")

    def __init__(self) -> None:
        self.requests = self.errors = self.rate_limited = self.tin = self.tout = 0
        self.lat_sum = 0
        self.lat_max: int | None = None
        self.cost = Decimal(0)

    def add(self, row: dict) -> None:
        n = row["n_requests"] or 0
        if not n:
            return
        self.requests += n
        self.errors += row["n_errors"] or 0
        self.rate_limited += row["n_rate_limited"] or 0
        self.tin += row["s_tokens_in"] or 0
        self.tout += row["s_tokens_out"] or 0
        self.cost += Decimal(row["s_cost"] or 0)
        self.lat_sum += row["s_latency"] or 0
        m = row["m_latency"] or 0
        self.lat_max = m if self.lat_max is None else max(self.lat_max, m)

    def bucket(self, start: datetime) -> UsageBucket:
        return UsageBucket(
            start=start,
            requests=self.requests,
            errors=self.errors,
            rate_limited=self.rate_limited,
            tokens_in=self.tin,
            tokens_out=self.tout,
            cost=self.cost,
            latency_avg_ms=self.lat_sum / self.requests if self.requests else None,
            latency_max_ms=self.lat_max,
        )


def trunc_bucket(period: str, field: str):
    kind = TruncDay if period == RollupPeriod.DAY else TruncHour
    return kind(field, tzinfo=UTC)


def as_utc(value) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)  # a date (SQLite)


def usage_series(
    *,
    application: Application | None = None,
    api: PublishedAPI | None = None,
    subscription: Subscription | None = None,
    period: str = "hour",
    since: datetime,
    until: datetime | None = None,
) -> list[UsageBucket]:
    """One bucket per UTC hour (or day) from ``since`` to ``until`` (now), empty ones included.

    Buckets the rollups have closed come from ``UsageRollup``; the rest (the hour, or the day,
    still open at the last rollup) from the raw records, so a call shows at once. At most four
    queries: the rollups' watermark, the rollups of the period, (for days) the hour rollups of
    the day still open, and the raw records after the last rolled-up hour.
    """
    if period not in _STEP:
        raise ValueError(f"period is hour or day, not {period!r}")
    until = until or timezone.now()
    first, last = bucket_start(since, period), bucket_start(until, period)
    step = _STEP[period]
    end = last + step
    scope: dict[str, Any] = {}
    if application is not None:
        scope["application"] = application
    if api is not None:
        scope["api"] = api
    if subscription is not None:
        scope["subscription"] = subscription

    state = UsageRollupState.objects.filter(pk=1).values_list("covered_until", flat=True).first()
    cut_hour = bucket_start(state, RollupPeriod.HOUR) if state else first
    cut_hour = max(first, min(cut_hour, end))
    cut_period = bucket_start(cut_hour, period) if period == RollupPeriod.DAY else cut_hour

    accs: dict[datetime, _Acc] = {}

    def take(rows, key: str) -> None:
        for row in rows:
            accs.setdefault(as_utc(row[key]), _Acc()).add(row)

    if cut_period > first:
        take(
            UsageRollup.objects.filter(
                period=period, start__gte=first, start__lt=cut_period, **scope
            )
            .values("start")
            .annotate(**rollup_aggregates())
            .order_by(),
            "start",
        )
    if period == RollupPeriod.DAY and cut_hour > cut_period:
        take(
            UsageRollup.objects.filter(
                period=RollupPeriod.HOUR, start__gte=cut_period, start__lt=cut_hour, **scope
            )
            .annotate(bucket=trunc_bucket(period, "start"))
            .values("bucket")
            .annotate(**rollup_aggregates())
            .order_by(),
            "bucket",
        )
    if cut_hour < end:
        take(
            UsageRecord.objects.filter(created_at__gte=cut_hour, created_at__lt=end, **scope)
            .annotate(bucket=trunc_bucket(period, "created_at"))
            .values("bucket")
            .annotate(**record_aggregates())
            .order_by(),
            "bucket",
        )

    out, at = [], first
    while at <= last:
        acc = accs.get(at)
        out.append(acc.bucket(at) if acc else UsageBucket(start=at))
        at += step
    return out

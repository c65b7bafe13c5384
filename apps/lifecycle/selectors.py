"""Reads of the lifecycle app, scoped like the products they belong to."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.accounts.models import User
from apps.catalog.models import Product
from apps.catalog.selectors import product_list_for

from .models import Assessment, BriefStatus, LifecycleRequest, ProductBrief, RequestState


def brief_in_force(*, product: Product) -> ProductBrief | None:
    return ProductBrief.objects.filter(product=product, status=BriefStatus.IN_FORCE).first()


def brief_list_for(*, user: User) -> QuerySet[ProductBrief]:
    return ProductBrief.objects.filter(product__in=product_list_for(user=user)).select_related(
        "product", "created_by"
    )


def assessment_list_for(*, user: User) -> QuerySet[Assessment]:
    return Assessment.objects.filter(product__in=product_list_for(user=user)).select_related(
        "product", "model_version", "updated_by"
    )


def request_list_for(*, user: User) -> QuerySet[LifecycleRequest]:
    return LifecycleRequest.objects.filter(product__in=product_list_for(user=user)).select_related(
        "product", "brief", "requested_by", "decided_by", "successor"
    )


def pending_request(*, product: Product) -> LifecycleRequest | None:
    return (
        LifecycleRequest.objects.filter(product=product, state=RequestState.PENDING)
        .select_related("brief", "requested_by", "successor")
        .first()
    )


def migration_status_for(*, product: Product) -> list[dict]:
    """For a deprecated product: each active subscriber of its deprecated APIs, and whether
    their application has called the API's successor since the deprecation (a successful call
    recorded in usage). Three queries, whatever the number of subscribers."""
    from apps.portal.models import (
        APIStatus,
        PublishedAPI,
        Subscription,
        SubscriptionState,
        UsageOutcome,
        UsageRecord,
    )

    apis = {
        api.pk: api
        for api in PublishedAPI.objects.filter(
            product=product, status=APIStatus.DEPRECATED
        ).select_related("successor")
    }
    subs = list(
        Subscription.objects.filter(api_id__in=apis, state=SubscriptionState.ACTIVE)
        .select_related("application", "application__owner", "plan")
        .order_by("application__name")
    )
    successors = {api.successor_id for api in apis.values() if api.successor_id}
    since = min((api.deprecated_at for api in apis.values() if api.deprecated_at), default=None)
    called: set[tuple] = set()
    if successors and subs:
        records = UsageRecord.objects.filter(
            api_id__in=successors,
            application_id__in={s.application_id for s in subs},
            outcome=UsageOutcome.OK,
        )
        if since is not None:
            records = records.filter(created_at__gte=since)
        called = set(records.values_list("application_id", "api_id").distinct())
    rows = []
    for sub in subs:
        api = apis[sub.api_id]
        rows.append(
            {
                "api": api,
                "subscription": sub,
                "application": sub.application,
                "owner": sub.application.owner,
                "successor": api.successor,
                "migrated": bool(api.successor_id)
                and (sub.application_id, api.successor_id) in called,
            }
        )
    return rows

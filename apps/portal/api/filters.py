"""Query filters of the portal API. A value that does not parse is a 400, never ignored."""

import uuid

from django_filters import rest_framework as filters

from apps.catalog.api.filters import StrictBooleanFilter

from ..models import (
    APIKey,
    APIStatus,
    Application,
    Plan,
    PublishedAPI,
    Subscription,
    SubscriptionState,
)


def _by_api(queryset, name, value):
    """``api``: an API id or slug."""
    if not value:
        return queryset
    try:
        return queryset.filter(api_id=uuid.UUID(value))
    except ValueError:
        return queryset.filter(api__slug=value)


class PublishedAPIFilter(filters.FilterSet):
    status = filters.ChoiceFilter(choices=APIStatus.choices)
    product = filters.UUIDFilter(field_name="product_id", help_text="Product id.")
    slug = filters.CharFilter()

    class Meta:
        model = PublishedAPI
        fields = ["status", "product", "slug"]


class PlanFilter(filters.FilterSet):
    api = filters.CharFilter(method=_by_api, help_text="API id or slug.")
    slug = filters.CharFilter()
    active = StrictBooleanFilter()
    approval_required = StrictBooleanFilter()

    class Meta:
        model = Plan
        fields = ["api", "slug", "active", "approval_required"]


class ApplicationFilter(filters.FilterSet):
    owner = filters.CharFilter(field_name="owner__username", help_text="Owner's username.")
    name = filters.CharFilter()

    class Meta:
        model = Application
        fields = ["owner", "name"]


class SubscriptionFilter(filters.FilterSet):
    state = filters.ChoiceFilter(choices=SubscriptionState.choices)
    api = filters.CharFilter(method=_by_api, help_text="API id or slug.")
    application = filters.UUIDFilter(field_name="application_id", help_text="Application id.")
    plan = filters.UUIDFilter(field_name="plan_id", help_text="Plan id.")

    class Meta:
        model = Subscription
        fields = ["state", "api", "application", "plan"]


class APIKeyFilter(filters.FilterSet):
    application = filters.UUIDFilter(field_name="application_id", help_text="Application id.")
    revoked = StrictBooleanFilter(
        method="filter_revoked", help_text="true: revoked keys only; false: not revoked."
    )

    class Meta:
        model = APIKey
        fields = ["application", "revoked"]

    def filter_revoked(self, queryset, name, value):
        if value is None:
            return queryset
        return queryset.filter(revoked_at__isnull=not value)

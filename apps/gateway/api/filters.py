"""Query filters of the gateway API. A value that does not parse is a 400, never ignored."""

from django_filters import rest_framework as filters

from apps.catalog.api.filters import StrictBooleanFilter
from apps.core.api import OrderingFilter

from ..filters import ProviderCallFilter
from ..models import Provider, ProviderKind

__all__ = ["ProviderCallFilter", "ProviderFilter", "StableOrderingFilter"]


class ProviderFilter(filters.FilterSet):
    kind = filters.ChoiceFilter(choices=ProviderKind.choices)
    enabled = StrictBooleanFilter()
    slug = filters.CharFilter()

    class Meta:
        model = Provider
        fields = ["kind", "enabled", "slug"]


class StableOrderingFilter(OrderingFilter):
    """The requested order, then newest first and the id: rows of equal value keep one order,
    so no row shows on two pages or on none."""

    tie_breakers = ("-created_at", "-pk")

    def get_ordering(self, request, queryset, view):
        ordering = list(super().get_ordering(request, queryset, view) or [])
        named = {field.lstrip("-") for field in ordering}
        return ordering + [f for f in self.tie_breakers if f.lstrip("-") not in named]

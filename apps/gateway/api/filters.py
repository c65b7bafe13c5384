"""Query filters of the gateway API. A value that does not parse is a 400, never ignored."""

from django_filters import rest_framework as filters

from apps.catalog.api.filters import StrictBooleanFilter

from ..models import Provider, ProviderKind


class ProviderFilter(filters.FilterSet):
    kind = filters.ChoiceFilter(choices=ProviderKind.choices)
    enabled = StrictBooleanFilter()
    slug = filters.CharFilter()

    class Meta:
        model = Provider
        fields = ["kind", "enabled", "slug"]

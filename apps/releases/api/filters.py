"""Query filters of the releases API. A value that does not parse is a 400, never ignored."""

from django_filters import rest_framework as filters

from ..models import Release, ReleaseStatus


class ReleaseFilter(filters.FilterSet):
    product = filters.UUIDFilter(field_name="product_id", help_text="Product id.")
    status = filters.ChoiceFilter(choices=ReleaseStatus.choices)
    version = filters.CharFilter(help_text="Exact semantic version, such as 1.4.0.")

    class Meta:
        model = Release
        fields = ["product", "status", "version"]

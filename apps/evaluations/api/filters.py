"""Query filters of the evaluation-suite API. A value that does not parse is a 400."""

from django_filters import rest_framework as filters

from apps.catalog.api.filters import StrictBooleanFilter

from ..models import EvalSuite, EvalSuiteVersion


class EvalSuiteFilter(filters.FilterSet):
    owner_team = filters.CharFilter(field_name="owner_team__slug", help_text="Team slug.")
    slug = filters.CharFilter()

    class Meta:
        model = EvalSuite
        fields = ["owner_team", "slug"]


class EvalSuiteVersionFilter(filters.FilterSet):
    suite = filters.UUIDFilter(field_name="suite_id", help_text="Evaluation suite id.")
    deprecated = StrictBooleanFilter(
        method="filter_deprecated", help_text="true: deprecated only; false: current only."
    )
    content_hash = filters.CharFilter()
    version = filters.NumberFilter(min_value=1, max_value=2**31 - 1)

    class Meta:
        model = EvalSuiteVersion
        fields = ["suite", "deprecated", "content_hash", "version"]

    def filter_deprecated(self, queryset, name, value):
        if value is None:
            return queryset
        return queryset.filter(deprecated_at__isnull=not value)

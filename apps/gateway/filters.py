"""The one filter set of provider calls, for the API (``/api/v1/provider-calls/``) and the page
(``/calls/``): the same parameters mean the same thing in both.

A value that does not parse is an error (a 400 in the API, a message on the page), never
ignored. A product named by id or slug, or a release, outside what the user may see simply
matches nothing: the queryset is already scoped (``selectors.provider_call_list_for``).
"""

import uuid

from django import forms
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field

from apps.catalog.api.filters import StrictBooleanFilter
from apps.core.dates import DateOrDateTimeFilter, date_schema, lower_bound, upper_bound

from .models import CallOutcome, CallSource, ProviderCall

DATE_HELP = (
    "An ISO 8601 date (`2026-05-01`) or date-time (`2026-05-01T13:30:00Z`; without an offset, "
    "in the server's time zone)."
)
AFTER_HELP = f"Calls made at or after this instant; a date alone: from its start. {DATE_HELP}"
BEFORE_HELP = f"Calls made before this instant; a date alone: that day included. {DATE_HELP}"


class SlugFilter(filters.CharFilter):
    """A slug (letters, digits, ``-`` and ``_``; a UUID is one too); anything else is an error."""

    field_class = forms.SlugField


class ProviderCallFilterForm(forms.Form):
    def clean(self):
        data = super().clean()
        after, before = data.get("created_after"), data.get("created_before")
        if after is not None and before is not None:
            high = upper_bound(before)
            if high is not None and high <= lower_bound(after):
                self.add_error("created_before", "This must be later than “From”.")
        return data


class ProviderCallFilter(filters.FilterSet):
    product = SlugFilter(method="filter_product", help_text="Product id or slug.")
    release = filters.UUIDFilter(field_name="release_id", help_text="Release id.")
    provider = SlugFilter(field_name="provider__slug", help_text="Provider slug.")
    outcome = filters.ChoiceFilter(choices=CallOutcome.choices)
    source = filters.ChoiceFilter(
        choices=CallSource.choices, help_text="Which part of the portal made the call."
    )
    cache_hit = StrictBooleanFilter(help_text="true: answered from the response cache.")
    created_after = DateOrDateTimeFilter(
        method="filter_created_after",
        label="From",
        help_text=AFTER_HELP,
    )
    created_before = DateOrDateTimeFilter(
        method="filter_created_before",
        label="To",
        help_text=BEFORE_HELP,
    )

    class Meta:
        model = ProviderCall
        form = ProviderCallFilterForm
        fields = [
            "product",
            "release",
            "provider",
            "outcome",
            "source",
            "cache_hit",
            "created_after",
            "created_before",
        ]

    def filter_product(self, queryset, name, value):
        try:
            return queryset.filter(product_id=uuid.UUID(value))
        except ValueError:
            return queryset.filter(product__slug=value)

    @extend_schema_field(date_schema(AFTER_HELP))
    def filter_created_after(self, queryset, name, value):
        return queryset.filter(created_at__gte=lower_bound(value))

    @extend_schema_field(date_schema(BEFORE_HELP))
    def filter_created_before(self, queryset, name, value):
        high = upper_bound(value)
        return queryset if high is None else queryset.filter(created_at__lt=high)

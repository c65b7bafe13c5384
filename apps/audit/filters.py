"""The one filter set of the audit trail, for the page (``/audit/``), its exports and the API
(``/api/v1/audit-events/``): the same parameters mean the same thing everywhere.

- ``actor``: the username at the time of the event (``actor_username``, exact);
- ``object_type`` (``app_label.model``, such as ``catalog.product``) and ``object_id``;
- ``product``: a product id, or a product slug;
- ``verb``: an event type, exact (``release.released``), or a family when it ends with ``.``
  or ``*`` (``subscription.`` matches every subscription event); ``verb_prefix`` is the family
  spelled out;
- ``at_after`` / ``at_before``: an ISO 8601 date or date-time; a date alone is a whole day in
  UTC (the server's time zone), a date-time without an offset is read in UTC too.

A value that does not parse is an error (a 400 in the API, a message on the page), never
ignored. The queryset is already scoped (``selectors.audit_event_list_for``): a product outside
the user's scope simply matches nothing. Every filter is an equality or a prefix on an indexed
column, so a filtered page ordered by ``-seq`` is answered from the indexes; a date range is
turned into a ``seq`` range as well (see ``SEQ_MARGIN``).
"""

import uuid

from django import forms
from django.apps import apps
from django.db.models.functions import Coalesce
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema_field

from apps.core.dates import DateOrDateTimeFilter, date_schema, lower_bound, upper_bound

from .models import AuditEvent

DATE_HELP = (
    "An ISO 8601 date (`2026-05-01`) or date-time (`2026-05-01T13:30:00Z`; without an offset, "
    "in UTC, the server's time zone)."
)
AFTER_HELP = f"Events at or after this instant; a date alone: from its start. {DATE_HELP}"
BEFORE_HELP = f"Events before this instant; a date alone: that day included. {DATE_HELP}"
# A date range is also a range of ``seq``: events get their time under the chain-head lock, in
# ``seq`` order, so times do not decrease along the chain. Each bound is found with one lookup
# in the ``at`` index and widened by this many events (ties, clock jitter between web
# processes); the ``at`` condition itself is kept, so the result is exact. With the range on
# ``seq``, the planner walks (actor_username, seq), (product_id, seq)... backwards within it
# instead of intersecting bitmaps or sorting a month of events.
SEQ_MARGIN = 1000

VERB_HELP = (
    "Event type, such as `release.released`; ending with `.` or `*` it is a family "
    "(`subscription.` matches every subscription event)."
)


def _by_time(queryset):
    """The event's time as ``at_row``: ``COALESCE(at, at)``, the same value, which the planner
    does not match to the ``at`` index: the ``seq`` range is the access path, the time a check
    on the rows it reads."""
    if "at_row" in queryset.query.annotations:
        return queryset
    return queryset.alias(at_row=Coalesce("at", "at"))


class AuditEventFilterForm(forms.Form):
    def clean(self):
        data = super().clean()
        after, before = data.get("at_after"), data.get("at_before")
        if after is not None and before is not None:
            high = upper_bound(before)
            if high is not None and high <= lower_bound(after):
                self.add_error("at_before", "This must be later than “From”.")
        return data


class AuditEventFilter(filters.FilterSet):
    actor = filters.CharFilter(
        field_name="actor_username", max_length=150, help_text="Username of the actor (exact)."
    )
    object_type = filters.CharFilter(
        max_length=100, help_text="`app_label.model` of the object, such as `catalog.product`."
    )
    object_id = filters.CharFilter(max_length=64, help_text="Id of the object (exact).")
    product = filters.CharFilter(
        method="filter_product", max_length=64, help_text="Product id or slug."
    )
    verb = filters.CharFilter(method="filter_verb", max_length=64, help_text=VERB_HELP)
    verb_prefix = filters.CharFilter(
        method="filter_verb_prefix",
        max_length=64,
        help_text="Event types starting with this text, such as `subscription.`.",
    )
    at_after = DateOrDateTimeFilter(method="filter_at_after", label="From", help_text=AFTER_HELP)
    at_before = DateOrDateTimeFilter(method="filter_at_before", label="To", help_text=BEFORE_HELP)

    class Meta:
        model = AuditEvent
        form = AuditEventFilterForm
        fields = [
            "actor",
            "object_type",
            "object_id",
            "product",
            "verb",
            "verb_prefix",
            "at_after",
            "at_before",
        ]

    def filter_product(self, queryset, name, value):
        value = value.strip()
        try:
            return queryset.filter(product_id=uuid.UUID(value))
        except ValueError:
            product = apps.get_model("catalog", "Product")
            ids = list(product.objects.filter(slug=value).values_list("pk", flat=True)[:1])
            return queryset.filter(product_id=ids[0]) if ids else queryset.none()

    def _walks_another_index(self) -> bool:
        """Whether an equality with its own ``(column, seq)`` index is filtered on."""
        data = getattr(self.form, "cleaned_data", {})
        return any(data.get(name) for name in ("actor", "product", "object_id"))

    def _verb(self, queryset):
        """The verb column, or, when another ``(column, seq)`` index is the access path, the
        same value as ``verb_row`` (``COALESCE(verb, verb)``), which the planner does not
        intersect with that index: PostgreSQL would otherwise AND the bitmaps of a common
        family (``subscription.``: a sixth of the trail) and sort, instead of walking the
        actor's or product's events backwards and stopping at the page's end."""
        if not self._walks_another_index():
            return queryset, "verb"
        if "verb_row" not in queryset.query.annotations:
            queryset = queryset.alias(verb_row=Coalesce("verb", "verb"))
        return queryset, "verb_row"

    def filter_verb(self, queryset, name, value):
        value = value.strip()
        queryset, column = self._verb(queryset)
        if value.endswith("*"):
            return queryset.filter(**{f"{column}__startswith": value[:-1]})
        if value.endswith("."):
            return queryset.filter(**{f"{column}__startswith": value})
        return queryset.filter(**{column: value})

    def filter_verb_prefix(self, queryset, name, value):
        queryset, column = self._verb(queryset)
        return queryset.filter(**{f"{column}__startswith": value.strip()})

    @extend_schema_field(date_schema(AFTER_HELP))
    def filter_at_after(self, queryset, name, value):
        low = lower_bound(value)
        first = (
            AuditEvent.objects.filter(at__gte=low).order_by("at").values_list("seq", flat=True)[:1]
        )
        if not first:
            return queryset.none()
        return _by_time(queryset).filter(at_row__gte=low, seq__gte=first[0] - SEQ_MARGIN)

    @extend_schema_field(date_schema(BEFORE_HELP))
    def filter_at_before(self, queryset, name, value):
        high = upper_bound(value)
        if high is None:
            return queryset
        last = (
            AuditEvent.objects.filter(at__lt=high).order_by("-at").values_list("seq", flat=True)[:1]
        )
        if not last:
            return queryset.none()
        return _by_time(queryset).filter(at_row__lt=high, seq__lte=last[0] + SEQ_MARGIN)


def filter_params(data) -> dict[str, str]:
    """The trail's filter parameters present in ``data`` (a QueryDict), for links and exports."""
    return {
        name: data.get(name, "").strip()
        for name in AuditEventFilter.base_filters
        if data.get(name, "").strip()
    }

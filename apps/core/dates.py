"""Dates in query parameters: an ISO 8601 date or date-time, as bounds of a time range in UTC.

A date alone is a whole day (from its first instant to the next day's); a date-time without an
offset is read in the server's time zone (UTC). Every bound is converted to UTC, as the database
stores it: PostgreSQL refuses offsets past ±15:59, which Python accepts (up to ±23:59). A value
that does not parse or falls outside what UTC can represent is a validation error.
"""

import datetime as dt

from django import forms
from django.utils import timezone
from django_filters import rest_framework as filters


def date_schema(description: str) -> dict:
    """The OpenAPI schema of a date-or-date-time parameter (drf-spectacular's override)."""
    return {
        "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "format": "date-time"}],
        "description": description,
    }


def start_of(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


def end_of(day: dt.date) -> dt.datetime | None:
    """The first instant after ``day``; None after the last representable day."""
    return None if day == dt.date.max else start_of(day + dt.timedelta(days=1))


def lower_bound(value: dt.date | dt.datetime) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else start_of(value)


def upper_bound(value: dt.date | dt.datetime) -> dt.datetime | None:
    return value if isinstance(value, dt.datetime) else end_of(value)


class DateOrDateTimeField(forms.Field):
    """An ISO 8601 date or date-time; ``clean`` returns a ``date`` or an aware ``datetime``."""

    default_error_messages = {
        "invalid": "Enter an ISO 8601 date (2026-05-01) or date-time (2026-05-01T13:30:00Z).",
        "range": "This date is out of range.",
    }

    def to_python(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, dt.datetime | dt.date):
            return value
        text = str(value).strip()
        try:
            if len(text) <= 10:  # 2026-05-01 (or 20260501)
                parsed = dt.date.fromisoformat(text)
            else:
                parsed = dt.datetime.fromisoformat(text)
        except ValueError:
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None
        try:
            if isinstance(parsed, dt.datetime):
                if timezone.is_naive(parsed):
                    parsed = timezone.make_aware(parsed)
                # In UTC, as the database stores it: PostgreSQL refuses offsets past ±15:59,
                # which Python accepts (up to ±23:59).
                parsed = parsed.astimezone(dt.UTC)
                bounds = [parsed]
            else:
                bounds = [lower_bound(parsed), upper_bound(parsed)]
            for bound in bounds:  # representable in UTC, as the database stores it
                if bound is not None:
                    bound.astimezone(dt.UTC)
        except (OverflowError, ValueError):
            raise forms.ValidationError(self.error_messages["range"], code="range") from None
        return parsed


class DateOrDateTimeFilter(filters.Filter):
    field_class = DateOrDateTimeField

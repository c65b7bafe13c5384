"""CSV and JSON exports of the audit trail, streamed.

The events of a (filtered, scoped) queryset are read in ``seq`` order with
``.iterator(chunk_size=2000)`` (a server-side cursor on PostgreSQL) and written out as they
come: memory stays bounded however many events match. The file is named after the day of the
export (``audit-trail-2026-05-01.csv``). Each export is itself recorded in the trail
(``audit.exported``, with its format and filters): who took a copy of the trail, and which part.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from apps.core.hashing import to_jsonable

from .models import AuditEvent
from .services import audit_record

FORMATS = ("csv", "json")
CHUNK = 2000
COLUMNS = [
    "seq",
    "at",
    "actor_username",
    "verb",
    "object_type",
    "object_id",
    "object_repr",
    "product_id",
    "before",
    "after",
    "ip_address",
    "request_id",
    "prev_hash",
    "hash",
]


def event_row(event: AuditEvent) -> dict:
    """One event as plain JSON types (the export's and the API's shape)."""
    return {
        "seq": event.seq,
        "at": event.at.isoformat(),
        "actor_username": event.actor_username,
        "verb": event.verb,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "object_repr": event.object_repr,
        "product_id": str(event.product_id) if event.product_id else None,
        "before": to_jsonable(event.before),
        "after": to_jsonable(event.after),
        "ip_address": event.ip_address,
        "request_id": event.request_id,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def _events(qs: QuerySet[AuditEvent]) -> Iterator[AuditEvent]:
    return qs.order_by("seq").iterator(chunk_size=CHUNK)


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    text = str(value)
    # A cell a spreadsheet would run as a formula is quoted as text (CSV injection).
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for event in events:
        row = event_row(event)
        yield writer.writerow([_csv_cell(row[name]) for name in COLUMNS])


def json_chunks(events: Iterable[AuditEvent]) -> Iterator[str]:
    """A JSON array, one event per line, written as the events are read."""
    yield "["
    first = True
    for event in events:
        yield ("\n" if first else ",\n") + json.dumps(event_row(event), ensure_ascii=False)
        first = False
    yield "\n]\n"


def export_response(
    *, qs: QuerySet[AuditEvent], fmt: str, actor, filters: dict[str, str], ip_address: str = ""
) -> StreamingHttpResponse:
    """The streaming download of ``qs`` in ``fmt`` (``csv`` or ``json``), recorded in the trail."""
    if fmt not in FORMATS:
        raise ValueError(fmt)
    audit_record(
        actor=actor,
        verb="audit.exported",
        object_type="audit.auditevent",
        object_id="",
        object_repr=f"audit trail ({fmt})",
        after={"format": fmt, "filters": filters},
        ip_address=ip_address,
    )
    today = timezone.now().date().isoformat()
    if fmt == "csv":
        response = StreamingHttpResponse(
            csv_lines(_events(qs)), content_type="text/csv; charset=utf-8"
        )
    else:
        response = StreamingHttpResponse(json_chunks(_events(qs)), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="audit-trail-{today}.{fmt}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response

"""CSV and JSON exports of the trail, streamed, from the page and from the API."""

import csv
import io
import json

import pytest
from django.http import StreamingHttpResponse
from django.utils import timezone

from apps.audit.models import AuditEvent

from .trail_helpers import World, record, utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return World()


def body(response) -> str:
    assert isinstance(response, StreamingHttpResponse)
    return b"".join(response.streaming_content).decode()


def test_csv_export_of_the_current_filter(client, world):
    a = record(world.pm, "subscription.requested", at=utc(2026, 3, 1, 9), after={"plan": "=pro"})
    record(world.pm, "release.released", at=utc(2026, 3, 1, 10))
    b = record(world.other_pm, "subscription.approved", at=utc(2026, 3, 2, 9))
    client.force_login(world.auditor)
    response = client.get("/audit/export/", {"format": "csv", "verb": "subscription."})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    today = timezone.now().date().isoformat()
    assert response["Content-Disposition"] == f'attachment; filename="audit-trail-{today}.csv"'
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert [int(r["seq"]) for r in rows] == [a.seq, b.seq]  # oldest first
    assert rows[0]["actor_username"] == "alice"
    assert json.loads(rows[0]["after"]) == {"plan": "=pro"}
    assert rows[0]["hash"] == a.hash


def test_json_export_and_the_export_is_audited(client, world):
    a = record(world.pm, "x.one", product_id=world.product.pk)
    record(world.other_pm, "x.two", product_id=world.other_product.pk)
    client.force_login(world.pm)  # a product manager: their products only
    response = client.get("/audit/export/", {"format": "json", "verb": "x."})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].endswith('.json"')
    data = json.loads(body(response))
    assert [row["seq"] for row in data] == [a.seq]
    assert data[0]["product_id"] == str(world.product.pk)
    exported = AuditEvent.objects.filter(verb="audit.exported").latest("seq")
    assert exported.actor_username == "alice"
    assert exported.after == {"format": "json", "filters": {"verb": "x."}}


def test_export_streams_in_chunks(client, world):
    for i in range(2500):
        AuditEvent(
            seq=100_000 + i,
            at=utc(2026, 1, 1),
            actor_username="bulk",
            verb="bulk.row",
            prev_hash="0" * 64,
            hash=f"{100_000 + i:064x}",
        ).save(force_insert=True)
    client.force_login(world.auditor)
    response = client.get("/audit/export/", {"format": "json", "actor": "bulk"})
    assert response.streaming
    data = json.loads(body(response))
    assert len(data) == 2500 and data[0]["seq"] == 100_000


def test_bad_format_or_filter_is_400(client, world):
    client.force_login(world.auditor)
    assert client.get("/audit/export/", {"format": "xml"}).status_code == 400
    assert client.get("/audit/export/", {"at_after": "soon"}).status_code == 400


def test_api_export(client_for, world):
    a = record(world.pm, "x.one")
    client = client_for(world.auditor)
    response = client.get("/api/v1/audit-events/export/", {"format": "csv", "actor": "alice"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(body(response))))
    assert a.seq in [int(r["seq"]) for r in rows]
    response = client.get("/api/v1/audit-events/export/", {"format": "json", "actor": "alice"})
    assert a.seq in [row["seq"] for row in json.loads(body(response))]
    response = client.get("/api/v1/audit-events/export/", {"format": "xml"})
    assert response.status_code == 400 and response.json()["code"] == "invalid"
    response = client.get("/api/v1/audit-events/export/", {"at_after": "soon"})
    assert response.status_code == 400 and set(response.json()) == {"code", "message", "fields"}

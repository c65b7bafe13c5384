"""Incidents: filing, updating, status moves, permissions, audit, filters, pages."""

from collections import Counter

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts.roles import ADMIN, AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.compliance import selectors, services
from apps.compliance.models import Incident
from apps.core.exceptions import ApplicationError
from tests.api_suite import APIResourceSuite, assert_error, last_seq, verbs_since
from tests.changes.helpers import released
from tests.factories import member, product

pytestmark = pytest.mark.django_db


def _file(actor, prod=None, **kwargs):
    prod = prod or product(actor)
    kwargs.setdefault("title", "Wrong answers about refunds")
    return services.incident_file(actor=actor, product=prod, **kwargs)


class TestIncidentAPI(APIResourceSuite):
    url = "/api/v1/incidents/"
    create_verbs = ("incident.filed",)
    update_verbs = ("incident.updated",)
    wrong_roles = (AUDITOR,)
    list_queries = 5
    bad_filters = ("status=nope", "severity=sev9", "release=not-a-uuid", "product=a%20b")

    def make(self, actor):
        return _file(actor, product(actor))

    def create_payload(self, actor):
        return {"product": str(product(actor).pk), "title": "Outage", "severity": "high"}

    def update_payload(self, obj):
        return {"title": f"{obj.title} (updated)"}


@pytest.fixture
def pm(db):
    return member(PRODUCT_MANAGER)


@pytest.mark.parametrize("role", [PRODUCT_MANAGER, REVIEWER, DEVELOPER, ADMIN])
def test_any_team_member_files(pm, role):
    prod = product(pm)
    someone = member(role, prod.owner_team)
    incident = _file(someone, prod, severity="critical")
    assert incident.severity == "sev1" and incident.status == "open"
    assert incident.filed_by == someone


def test_auditors_and_outsiders_cannot_file(pm):
    prod = product(pm)
    with pytest.raises(ApplicationError) as exc:
        _file(member(AUDITOR, prod.owner_team), prod)
    assert exc.value.status == 403
    with pytest.raises(ApplicationError) as exc:
        _file(member(PRODUCT_MANAGER), prod)
    assert exc.value.status == 404


def test_status_moves_are_audited_and_guarded(pm):
    rel = released(pm)
    incident = _file(pm, rel.product, release=rel)
    seq = last_seq()
    incident = services.incident_transition(
        actor=pm, incident=incident, to_status="mitigated", note="Rolled back the prompt."
    )
    incident = services.incident_transition(actor=pm, incident=incident, to_status="resolved")
    assert incident.resolved_at is not None
    assert "Rolled back the prompt." in incident.actions_taken
    incident = services.incident_transition(actor=pm, incident=incident, to_status="closed")
    assert incident.closed_at is not None
    assert verbs_since(seq) == Counter({"incident.status_changed": 3})
    with pytest.raises(ApplicationError) as exc:
        services.incident_transition(actor=pm, incident=incident, to_status="open")
    assert exc.value.code == "invalid_transition"
    with pytest.raises(ApplicationError):
        services.incident_update(actor=pm, incident=incident, title="x")
    assert incident.history.count() == 4  # filed + three moves: history kept


def test_update_audits_changed_fields_only(pm):
    incident = _file(pm)
    seq = last_seq()
    services.incident_update(actor=pm, incident=incident, title=incident.title)
    assert verbs_since(seq) == Counter()
    services.incident_update(actor=pm, incident=incident, severity="sev1", description="More.")
    assert verbs_since(seq) == Counter({"incident.updated": 1})


def test_release_must_belong_to_the_product(pm):
    other = released(pm)
    with pytest.raises(ApplicationError) as exc:
        _file(pm, product(pm), release=other)
    assert "release" in exc.value.extra


def test_selectors_for_the_dossier(pm):
    rel = released(pm)
    a = _file(pm, rel.product, release=rel)
    _file(pm, rel.product)
    assert list(selectors.incident_list_for_release(rel)) == [a]
    assert selectors.incident_list_for(user=pm).count() == 2
    assert selectors.incident_list_for(user=member(PRODUCT_MANAGER)).count() == 0
    assert selectors.incident_list_for(user=member(AUDITOR)).count() == 2


def test_api_filters_and_status_patch(client_for, pm):
    rel = released(pm)
    a = _file(pm, rel.product, release=rel, severity="sev1")
    _file(pm, rel.product, severity="sev4")
    client = client_for(pm)
    rows = client.get("/api/v1/incidents/", {"release": str(rel.pk)}).json()["results"]
    assert [r["id"] for r in rows] == [str(a.pk)]
    assert client.get("/api/v1/incidents/", {"severity": "sev4"}).json()["count"] == 1
    assert client.get("/api/v1/incidents/", {"product": rel.product.slug}).json()["count"] == 2
    seq = last_seq()
    response = client.patch(
        f"/api/v1/incidents/{a.pk}/", {"status": "resolved", "note": "Fixed."}, format="json"
    )
    assert response.status_code == 200, response.data
    assert response.json()["status"] == "resolved" and response.json()["resolved_at"]
    assert verbs_since(seq) == Counter({"incident.status_changed": 1})
    assert client.get("/api/v1/incidents/", {"status": "open"}).json()["count"] == 1
    assert_error(
        client.patch(f"/api/v1/incidents/{a.pk}/", {"status": "mitigated"}, format="json"), 409
    )
    # developers file through the API too
    dev = client_for(member(DEVELOPER, rel.product.owner_team))
    response = dev.post(
        "/api/v1/incidents/",
        {
            "product": str(rel.product.pk),
            "title": "Slow",
            "occurred_at": timezone.now().isoformat(),
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    assert response.json()["severity"] == "sev3"


def test_incidents_are_never_deleted(client_for, pm):
    incident = _file(pm)
    assert_error(client_for(pm).delete(f"/api/v1/incidents/{incident.pk}/"), 405)
    with pytest.raises(ApplicationError):
        Incident.objects.filter(pk=incident.pk).delete()


# --- pages -------------------------------------------------------------------------------------


def _web(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def test_pages_file_update_and_move(pm):
    rel = released(pm)
    prod = rel.product
    dev = member(DEVELOPER, prod.owner_team)
    c = _web(dev)
    page = c.get(f"/products/{prod.slug}/incidents/")
    assert page.status_code == 200 and "data-incident-form" in page.content.decode()
    seq = last_seq()
    response = c.post(
        f"/products/{prod.slug}/incidents/",
        {"title": "Hallucinated prices", "severity": "sev2", "release": str(rel.pk)},
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    incident = Incident.objects.get(title="Hallucinated prices")
    assert incident.release == rel and incident.filed_by == dev
    detail = c.get(f"/incidents/{incident.pk}/")
    assert detail.status_code == 200 and 'data-move="mitigated"' in detail.content.decode()
    c.post(f"/incidents/{incident.pk}/status/", {"status": "mitigated"})
    response = c.post(
        f"/incidents/{incident.pk}/",
        {
            "title": "Hallucinated prices",
            "severity": "sev1",
            "release": str(rel.pk),
            "occurred_at": "2026-01-01T10:00",
            "description": "",
            "actions_taken": "Rolled back",
        },
    )
    assert response.status_code == 302, response.content.decode()[-2000:]
    incident.refresh_from_db()
    assert (incident.status, incident.severity) == ("mitigated", "sev1")
    assert verbs_since(seq) == Counter(
        {"incident.filed": 1, "incident.status_changed": 1, "incident.updated": 1}
    )
    # on the product page too
    assert "Hallucinated prices" in c.get(f"/products/{prod.pk}/").content.decode()


def test_auditor_reads_but_cannot_file(pm):
    prod = product(pm)
    incident = _file(pm, prod)
    auditor = member(AUDITOR, prod.owner_team)
    c = _web(auditor)
    page = c.get(f"/products/{prod.slug}/incidents/")
    assert page.status_code == 200 and "data-incident-form" not in page.content.decode()
    assert c.post(f"/products/{prod.slug}/incidents/", {"title": "x"}).status_code == 403
    assert c.get(f"/incidents/{incident.pk}/").status_code == 200
    assert c.post(f"/incidents/{incident.pk}/status/", {"status": "resolved"}).status_code == 403
    assert _web(member(PRODUCT_MANAGER)).get(f"/incidents/{incident.pk}/").status_code == 404

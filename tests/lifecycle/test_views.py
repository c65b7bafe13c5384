"""Lifecycle pages: the brief and assessment forms, the product page's section (checklists,
request, signature), and their refusals."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.accounts.roles import AUDITOR, PRODUCT_MANAGER, REVIEWER
from apps.gateway.models import ProviderCall
from apps.lifecycle import services as lifecycle
from apps.lifecycle.models import BriefStatus, LifecycleRequest
from tests.evaluations.factories import suite_with_cases
from tests.factories import PASSWORD, member, product

from .helpers import assessment, brief, team_member

pytestmark = pytest.mark.django_db

# What the lifecycle section adds to the product page of a product in concept without a brief
# (other apps' query-count tests import it): the brief in force, the proposed brief, the
# assessment, the pending request, the checklists of design (brief, assessment) and retired (the
# approved deprecation, the APIs serving it), the last 30 days' cost, the signed decisions, the
# successor choices.
LIFECYCLE_PANEL_QUERIES = 12


@pytest.fixture
def pm():
    return member(PRODUCT_MANAGER)


def _client(client, user):
    client.force_login(user)
    return client


def _text(response) -> str:
    return response.content.decode()


BRIEF_POST = {
    "problem_statement": "Agents answer the same questions all day.",
    "target_users": "Support agents",
    "user_stories": "As a support agent, I want drafted answers, so that I answer faster",
    "intended_uses": "Drafts an agent reviews.",
    "out_of_scope_uses": "Unreviewed answers.",
    "data_sources": "Help centre articles",
    "data_consent": "Public content",
    "data_pii": "None stored",
    "target_metrics": "p95_latency_ms <= 2000\nerror_rate <= 0.05",
    "changelog": "First brief.",
}


def test_the_brief_form_writes_a_version_in_force(client, pm):
    prod = product(pm)
    c = _client(client, pm)
    url = reverse("lifecycle_brief", args=[prod.pk])
    assert "Write the brief" in _text(c.get(url))
    response = c.post(url, BRIEF_POST)
    assert response.status_code == 302
    b = prod.briefs.get()
    assert b.status == BriefStatus.IN_FORCE
    assert b.user_stories == [
        {"as_a": "support agent", "i_want": "drafted answers", "so_that": "I answer faster"}
    ]
    assert b.target_metrics == [
        {"metric": "p95_latency_ms", "op": "<=", "threshold": 2000.0},
        {"metric": "error_rate", "op": "<=", "threshold": 0.05},
    ]
    page = _text(c.get(url))
    assert "In force" in page and "drafted answers" in page


def test_bad_lines_are_named_and_nothing_is_written(client, pm):
    prod = product(pm)
    c = _client(client, pm)
    url = reverse("lifecycle_brief", args=[prod.pk])
    bad = {**BRIEF_POST, "user_stories": "Agents want answers", "target_metrics": "speed fast"}
    response = c.post(url, bad)
    assert response.status_code == 200
    html = _text(response)
    assert "Line 1: write “As a …, I want …, so that …”." in html
    unknown = {**BRIEF_POST, "target_metrics": "pass_rate nope >= 0.9"}
    html = _text(c.post(url, unknown))
    assert "no suite &#x27;nope&#x27;" in html or "no suite 'nope'" in html
    assert not prod.briefs.exists()


def test_the_assessment_form_and_its_estimate(client, pm):
    prod = product(pm)
    c = _client(client, pm)
    url = reverse("lifecycle_assessment", args=[prod.pk])
    response = c.post(
        url,
        {
            "technical": "Feasible.",
            "ethical": "Reviewed.",
            "economic": "Cheap.",
            "risks": "Wrong answer | 3 | 2 | Agents review\nLeak | 1 | 5 | No PII stored",
            "affected_groups": "Customers\nAgents",
            "calls_per_month": 1000,
            "tokens_in_per_call": 100,
            "tokens_out_per_call": 50,
        },
    )
    assert response.status_code == 302
    a = prod.assessment
    assert [r["title"] for r in a.risks] == ["Wrong answer", "Leak"]
    assert a.affected_groups == ["Customers", "Agents"]
    bad = c.post(url, {"risks": "Wrong | high | 2", "calls_per_month": 0})
    assert "Line 1: write “title | likelihood 1-5" in _text(bad)


def test_only_authors_write_and_outsiders_get_404(client, pm):
    prod = product(pm)
    reviewer = team_member(pm, REVIEWER)
    c = _client(client, reviewer)
    assert c.get(reverse("lifecycle_brief", args=[prod.pk])).status_code == 200
    assert c.post(reverse("lifecycle_brief", args=[prod.pk]), BRIEF_POST).status_code == 403
    assert c.post(reverse("lifecycle_assessment", args=[prod.pk]), {}).status_code == 403
    outsider = member(PRODUCT_MANAGER)
    c = _client(client, outsider)
    assert c.get(reverse("lifecycle_brief", args=[prod.pk])).status_code == 404
    auditor = member(AUDITOR)
    c = _client(client, auditor)
    assert c.get(reverse("lifecycle_assessment", args=[prod.pk])).status_code == 200
    assert c.post(reverse("lifecycle_brief", args=[prod.pk]), BRIEF_POST).status_code == 403


def test_request_and_sign_from_the_product_page(client, pm):
    """GIVEN a product with a brief and an assessment WHEN the pm requests design on the product
    page THEN the reviewer sees the signature form; a wrong password is a message; the right one
    moves the product."""
    prod = product(pm)
    reviewer = team_member(pm, REVIEWER)
    detail = reverse("product_detail", args=[prod.pk])
    c = _client(client, pm)
    html = _text(c.get(detail))
    assert 'data-move="design" data-ready="no"' in html
    refused = c.post(
        reverse("lifecycle_request_create", args=[prod.pk]), {"to_stage": "design"}, follow=True
    )
    assert "entry criteria of design are not met" in _text(refused)
    brief(pm, prod)
    assessment(pm, prod)
    html = _text(c.get(detail))
    assert 'data-move="design" data-ready="yes"' in html and "Request move to design" in html
    c.post(reverse("lifecycle_request_create", args=[prod.pk]), {"to_stage": "design"})
    req = LifecycleRequest.objects.get(product=prod)
    html = _text(c.get(detail))
    assert "You requested this move, so someone else must sign it." in html
    c = _client(client, reviewer)
    assert "Sign and approve" in _text(c.get(detail))
    approve = reverse("lifecycle_request_approve", args=[req.pk])
    wrong = c.post(approve, {"password": "nope", "comment": "x"}, follow=True)
    assert "Your password did not match" in _text(wrong)
    done = c.post(approve, {"password": PASSWORD, "comment": "Read both."}, follow=True)
    assert "is now in design" in _text(done)
    prod.refresh_from_db()
    assert prod.stage == "design"


def test_the_section_shows_metrics_with_a_trend(client, pm):
    prod = product(pm)
    sv = suite_with_cases(pm)
    brief(pm, prod, suite_slug=sv.suite.slug)
    html = _text(_client(client, pm).get(reverse("product_detail", args=[prod.pk])))
    assert "data-actual-cost" not in html  # no traffic yet
    for latency in (100, 200, 300):
        ProviderCall.objects.create(
            product=prod, outcome="ok", latency_ms=latency, cost=Decimal("0.25")
        )
    html = _text(_client(client, pm).get(reverse("product_detail", args=[prod.pk])))
    assert "<strong data-actual-cost>$0.75</strong>" in html
    assert 'data-metric="p95_latency_ms" data-met="yes"' in html
    assert 'data-metric="pass_rate" data-met="unknown"' in html


def test_sparkline_points():
    from apps.lifecycle.views import sparkline

    assert sparkline([1.0]) == ""
    points = sparkline([0.5, 1.0, 0.75]).split()
    assert len(points) == 3 and points[0].startswith("0.0,") and points[-1].startswith("120.0,")


@pytest.mark.parametrize("versions", [1, 6])
def test_the_section_costs_the_same_however_many_versions_and_requests(
    client, pm, versions, django_assert_num_queries
):
    prod = product(pm)
    c = _client(client, pm)
    url = reverse("product_detail", args=[prod.pk])
    c.get(url)
    with CaptureQueriesContext(connection) as before:
        c.get(url)
    for i in range(versions):
        brief(pm, prod, problem_statement=f"Problem {i}.")
    assessment(pm, prod)
    for _ in range(versions):
        req = lifecycle.stage_request_create(actor=pm, product=prod, to_stage="design")
        lifecycle.request_withdraw(actor=pm, request=req)
    c.get(url)
    with CaptureQueriesContext(connection) as after:
        c.get(url)
    # A fixed three more than with none, for one version as for six: the brief's gateway target
    # measured (two), the decisions listed.
    assert len(after) == len(before) + 3, [q["sql"][:80] for q in after.captured_queries]


def test_admins_edit_a_gate_in_django_admin_through_the_service(client):
    from apps.audit.models import AuditEvent
    from apps.lifecycle.models import GateDefinition

    admin = member("admin", is_staff=True, is_superuser=True)
    c = _client(client, admin)
    gate = GateDefinition.objects.get(risk_class="high", stage="design")
    url = reverse("admin:lifecycle_gatedefinition_change", args=[gate.pk])
    assert c.get(url).status_code == 200
    response = c.post(url, {"criteria": ["brief"], "signer_roles": ["admin"]})
    assert response.status_code == 302, _text(response)[:2000]
    gate.refresh_from_db()
    assert (gate.criteria, gate.signer_roles) == (["brief"], ["admin"])
    assert AuditEvent.objects.filter(verb="gate.set", object_id=str(gate.pk)).exists()
    assert c.get(reverse("admin:lifecycle_productbrief_changelist")).status_code == 200

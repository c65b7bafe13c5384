"""The lifecycle REST API: briefs, assessments, stage requests and their signatures, gate
definitions, the stage checklist and the target metrics of a product."""

from collections import Counter
from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from apps.accounts import services as accounts
from apps.accounts.models import User
from apps.accounts.roles import ADMIN, AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.catalog.models import Product
from apps.gateway.models import Provider, ProviderCall, ProviderPrice
from apps.lifecycle import services as lifecycle
from apps.lifecycle.models import GateDefinition, LifecycleRequest

from ..api_suite import APIResourceSuite, assert_error, last_seq, verbs_since
from ..factories import PASSWORD, TeamFactory, member, model_version, product
from .helpers import STORY, assessment, brief, in_design, signed_move, team_member

pytestmark = pytest.mark.django_db

BRIEFS = "/api/v1/product-briefs/"
ASSESSMENTS = "/api/v1/assessments/"
REQUESTS = "/api/v1/lifecycle-requests/"
GATES = "/api/v1/gate-definitions/"
CHECKLIST = "/api/v1/lifecycle-checklist/"
METRICS = "/api/v1/target-metrics/"

BRIEF_BODY = {
    "problem_statement": "Agents answer the same questions all day.",
    "target_users": "Support agents",
    "user_stories": [STORY],
    "intended_uses": "Draft answers an agent reviews.",
    "out_of_scope_uses": "Answering customers without review.",
    "data_strategy": {"sources": "help centre", "consent": "public", "pii_handling": "none"},
    "target_metrics": [{"metric": "p95_latency_ms", "threshold": 2000}],
    "changelog": "First version.",
}
ASSESSMENT_BODY = {
    "technical": "A hosted model answers in time.",
    "ethical": "Agents review every answer.",
    "economic": "Cheaper than a second agent.",
    "risks": [{"title": "Wrong answer", "likelihood": 3, "severity": 2, "mitigation": "Review"}],
    "affected_groups": ["Support agents", "Customers"],
    "calls_per_month": 10_000,
    "tokens_in_per_call": 500,
    "tokens_out_per_call": 200,
}


def _ready(pm) -> Product:
    """A product in concept with a brief and an assessment: the design gate is met."""
    prod = product(pm)
    brief(pm, prod)
    assessment(pm, prod)
    return prod


def _requested(pm, prod=None) -> LifecycleRequest:
    return lifecycle.stage_request_create(
        actor=pm, product=prod or _ready(pm), to_stage="design", comment="Ready."
    )


def _post(client, url, body):
    return client.post(url, body, format="json")


@pytest.fixture
def pm():
    return member(PRODUCT_MANAGER)


@pytest.fixture
def reviewer(pm):
    return team_member(pm, REVIEWER)


# --- The shared suite --------------------------------------------------------------------------


class TestProductBriefAPI(APIResourceSuite):
    url = BRIEFS
    create_verbs = ("brief.created",)
    list_queries = 5
    bad_filters = ("status=nope", "product=a%20b")

    def make(self, actor):
        return brief(actor, product(actor))

    def create_payload(self, actor):
        return {"product": product(actor).slug, **BRIEF_BODY}


class TestAssessmentAPI(APIResourceSuite):
    url = ASSESSMENTS
    create_verbs = ("assessment.created",)
    list_queries = 5
    bad_filters = ("product=a%20b",)

    def make(self, actor):
        return assessment(actor, product(actor))

    def make_for_list(self, actor):
        """With a priced model version: the list still reads no price table per row."""
        prod = product(actor)
        return assessment(actor, prod, model_version=model_version(actor, prod.owner_team))

    def create_payload(self, actor):
        return {"product": str(product(actor).pk), **ASSESSMENT_BODY}


class TestLifecycleRequestAPI(APIResourceSuite):
    url = REQUESTS
    create_verbs = ("lifecycle.requested",)
    actions = (("withdraw", {}, ("lifecycle.withdrawn",)),)
    list_queries = 5
    bad_filters = ("state=open", "kind=release", "product=a%20b")

    def make(self, actor):
        return _requested(actor)

    def make_for_list(self, actor):
        """Pending and signed requests in turn: the signer, brief and evidence are joined."""
        n = getattr(self, "_n", 0)
        self._n = n + 1
        req = _requested(actor)
        if n % 2:
            self._signer = getattr(self, "_signer", None) or team_member(actor, REVIEWER)
            req = lifecycle.request_approve(
                actor=self._signer, request=req, password=PASSWORD, comment="ok"
            )
        return req

    def create_payload(self, actor):
        return {"product": str(_ready(actor).pk), "to_stage": "design", "comment": "Ready."}


# --- briefs ------------------------------------------------------------------------------------


def test_brief_shape_and_versions(client_for, pm):
    prod = product(pm)
    client = client_for(pm)
    response = _post(client, BRIEFS, {"product": str(prod.pk), **BRIEF_BODY})
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["product"] == {"id": str(prod.pk), "slug": prod.slug}
    assert (body["version"], body["status"], body["created_by"]) == (1, "in_force", pm.username)
    assert len(body["content_hash"]) == 64
    assert body["user_stories"] == [STORY]
    assert body["target_metrics"] == [{"metric": "p95_latency_ms", "op": "<=", "threshold": 2000}]
    # The same content written through the service hashes the same (2000 stays an integer).
    same = lifecycle.brief_create(actor=pm, product=product(pm), **BRIEF_BODY)
    assert body["content_hash"] == same.content_hash
    # The same content again is a conflict; a change is version 2, and v1 is superseded.
    assert_error(_post(client, BRIEFS, {"product": prod.slug, **BRIEF_BODY}), 409, "unchanged")
    changed = {**BRIEF_BODY, "problem_statement": "Agents answer slowly."}
    assert _post(client, BRIEFS, {"product": prod.slug, **changed}).json()["version"] == 2
    rows = client.get(BRIEFS, {"product": prod.slug}).json()["results"]
    assert [(r["version"], r["status"]) for r in rows] == [(2, "in_force"), (1, "superseded")]
    assert client.get(BRIEFS, {"product": str(prod.pk), "status": "in_force"}).json()["count"] == 1
    assert client.get(BRIEFS, {"product": "someone-elses"}).json()["count"] == 0


def test_read_only_brief_fields_are_ignored_and_versions_immutable(client_for, pm):
    prod = product(pm)
    client = client_for(pm)
    response = _post(
        client,
        BRIEFS,
        {"product": prod.slug, **BRIEF_BODY, "version": 7, "status": "proposed"},
    )
    assert (response.json()["version"], response.json()["status"]) == (1, "in_force")
    detail = f"{BRIEFS}{response.json()['id']}/"
    assert_error(client.patch(detail, {"changelog": "x"}, format="json"), 405)
    assert_error(client.put(detail, {"changelog": "x"}, format="json"), 405)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"user_stories": [{"as_a": "agent", "i_want": "x"}]}, "user_stories[0].so_that"),
        ({"user_stories": "stories"}, "user_stories.non_field_errors"),
        ({"data_strategy": {"where": "x"}}, "data_strategy.non_field_errors"),
        ({"target_metrics": [{"metric": "speed", "threshold": 1}]}, "target_metrics[0].metric"),
        ({"target_metrics": [{"metric": "error_rate", "threshold": "nan"}]}, None),
        ({"target_metrics": [{"metric": "pass_rate", "threshold": 0.9}]}, None),
        ({"target_metrics": [{"metric": "error_rate", "threshold": 3}]}, None),
        ({"problem_statement": "   "}, "problem_statement"),
        ({"problem_statement": "bad \x00 byte"}, "problem_statement"),
    ],
)
def test_bad_brief_input_is_400_naming_the_field(client_for, pm, change, field):
    """GIVEN a body the types refuse (serializer) or the rules refuse (service) THEN a 400 in
    the one error shape, naming the field, and nothing is written."""
    prod = product(pm)
    client = client_for(pm)
    seq = last_seq()
    body = assert_error(
        _post(client, BRIEFS, {"product": prod.slug, **BRIEF_BODY, **change}),
        400,
        "invalid",
    )
    if field:
        assert field in body["fields"], body
    else:
        assert any(key.startswith("target_metrics[0]") for key in body["fields"]), body
    assert verbs_since(seq) == Counter()


def test_brief_for_a_product_out_of_scope_or_missing_is_404(client_for, pm):
    theirs = product(member(PRODUCT_MANAGER))
    client = client_for(pm)
    for ref in (str(theirs.pk), theirs.slug, "no-such-product"):
        body = assert_error(_post(client, BRIEFS, {"product": ref, **BRIEF_BODY}), 404)
        assert "product" in body["fields"]
    assert_error(_post(client, BRIEFS, {"product": "not a slug", **BRIEF_BODY}), 400, "invalid")
    assert not theirs.briefs.exists()


def test_a_reviewer_cannot_write_a_brief(client_for, pm, reviewer):
    prod = product(pm)
    client = client_for(reviewer)
    seq = last_seq()
    body = assert_error(_post(client, BRIEFS, {"product": prod.slug, **BRIEF_BODY}), 403)
    assert prod.owner_team.slug in body["message"]
    assert verbs_since(seq) == Counter()


def test_after_design_a_brief_is_proposed_with_a_brief_request(client_for, pm, reviewer):
    """GIVEN a product past design WHEN the pm posts a new brief THEN it is proposed and a
    brief request waits; the reviewer signs it over the API and it comes into force."""
    prod, _ = in_design(pm, reviewer)
    signed_move(pm, reviewer, prod, "development")
    client, signer = client_for(pm), client_for(reviewer)
    seq = last_seq()
    changed = {**BRIEF_BODY, "problem_statement": "A sharper problem.", "changelog": "Sharper."}
    response = _post(client, BRIEFS, {"product": prod.slug, **changed})
    assert response.status_code == 201, response.data
    assert (response.json()["version"], response.json()["status"]) == (2, "proposed")
    assert verbs_since(seq) == Counter({"brief.created": 1, "lifecycle.requested": 1})
    (req,) = client.get(REQUESTS, {"product": prod.slug, "state": "pending"}).json()["results"]
    assert (req["kind"], req["brief"], req["to_stage"], req["comment"]) == (
        "brief",
        2,
        "",
        "Sharper.",
    )
    assert client.get(REQUESTS, {"product": prod.slug, "kind": "stage"}).json()["count"] == 2
    seq = last_seq()
    response = _post(signer, f"{REQUESTS}{req['id']}/approve/", {"password": PASSWORD})
    assert response.status_code == 200, response.data
    assert verbs_since(seq) == Counter({"lifecycle.approved": 1, "brief.in_force": 1})
    rows = client.get(BRIEFS, {"product": prod.slug, "status": "in_force"}).json()["results"]
    assert [r["version"] for r in rows] == [2]


# --- assessments -------------------------------------------------------------------------------


def test_assessment_is_created_then_replaced_with_its_estimate(client_for, pm):
    prod = product(pm)
    mv = model_version(pm, prod.owner_team, provider_model="priced-1")
    provider, _ = Provider.objects.get_or_create(
        slug="builtin", defaults={"name": "Built-in", "kind": "builtin"}
    )
    ProviderPrice.objects.create(
        provider=provider,
        provider_model="priced-1",
        input_per_million=Decimal("2.00"),
        output_per_million=Decimal("8.00"),
    )
    client = client_for(pm)
    seq = last_seq()
    body = {"product": prod.slug, **ASSESSMENT_BODY, "model_version": str(mv.pk)}
    response = _post(client, ASSESSMENTS, body)
    assert response.status_code == 201, response.data
    created = response.json()
    # 10,000 calls x (500 x $2 + 200 x $8) / 1M = $26.00 a month
    assert created["monthly_estimate"] == "26.00"
    assert created["model_version"] == str(mv.pk) and created["updated_by"] == pm.username
    assert created["risks"] == ASSESSMENT_BODY["risks"]
    response = _post(client, ASSESSMENTS, {**body, "calls_per_month": 20_000})
    assert response.status_code == 200, response.data
    assert response.json()["id"] == created["id"]
    assert response.json()["monthly_estimate"] == "52.00"
    assert verbs_since(seq) == Counter({"assessment.created": 1, "assessment.updated": 1})
    # The same again changes nothing and records nothing.
    seq = last_seq()
    assert _post(client, ASSESSMENTS, {**body, "calls_per_month": 20_000}).status_code == 200
    assert verbs_since(seq) == Counter()
    # The list leaves the estimate out (it would read the price table per row); one has it.
    (row,) = client.get(ASSESSMENTS, {"product": prod.slug}).json()["results"]
    assert "monthly_estimate" not in row
    assert client.get(f"{ASSESSMENTS}{row['id']}/").json()["monthly_estimate"] == "52.00"


def test_assessment_without_a_price_has_no_estimate(client_for, pm):
    prod = product(pm)
    response = _post(client_for(pm), ASSESSMENTS, {"product": prod.slug, **ASSESSMENT_BODY})
    assert response.status_code == 201, response.data
    assert response.json()["monthly_estimate"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"risks": [{"title": "x", "likelihood": 9, "severity": 1}]}, "risks[0].likelihood"),
        ({"risks": [{"title": "", "likelihood": 1, "severity": 1}]}, "risks[0].title"),
        ({"calls_per_month": -1}, "calls_per_month"),
        ({"calls_per_month": 10**12}, "calls_per_month"),
        ({"affected_groups": "agents"}, "affected_groups"),
        ({"model_version": "not-a-uuid"}, "model_version"),
    ],
)
def test_bad_assessment_input_is_400(client_for, pm, change, field):
    prod = product(pm)
    body = assert_error(
        _post(client_for(pm), ASSESSMENTS, {"product": prod.slug, **ASSESSMENT_BODY, **change}),
        400,
        "invalid",
    )
    assert field in body["fields"], body


def test_assessment_model_version_of_another_team_is_400(client_for, pm):
    """GIVEN a pm of two teams THEN neither another team's model version (out of scope) nor
    one of the pm's other team (the service's rule) prices the product's assessment."""
    prod = product(pm)
    theirs = model_version(member(PRODUCT_MANAGER))
    second_team = TeamFactory()
    accounts.membership_add(actor=None, user=pm, team=second_team, role=PRODUCT_MANAGER)
    pm = User.objects.get(pk=pm.pk)
    mine_elsewhere = model_version(pm, second_team)
    client = client_for(pm)
    for mv in (theirs, mine_elsewhere):
        body = {"product": prod.slug, **ASSESSMENT_BODY, "model_version": str(mv.pk)}
        assert "model_version" in assert_error(_post(client, ASSESSMENTS, body), 400)["fields"]


# --- stage requests: the whole flow over the API -----------------------------------------------


def test_design_flow_over_the_api(client_for, pm, reviewer):
    """GIVEN a product in concept WHEN its pm asks for design THEN 409 gate_unmet naming the
    brief and the assessment; after both are posted the request is made; the requester cannot
    sign it, a wrong password is refused (and audited); the team's reviewer signs it and the
    product is in design, the checklist stored as evidence."""
    prod = product(pm)
    client, signer = client_for(pm), client_for(reviewer)
    developer = client_for(team_member(pm, DEVELOPER))
    ask = {"product": prod.slug, "to_stage": "design", "comment": "Ready for design."}

    seq = last_seq()
    body = assert_error(_post(client, REQUESTS, ask), 409, "gate_unmet")
    assert "Product brief in force" in body["message"]
    assert "Feasibility and impact assessment" in body["message"]
    assert body["fields"]["criteria"] == ["brief", "assessment"]
    assert verbs_since(seq) == Counter()

    checklist = client.get(CHECKLIST, {"product": prod.slug, "to_stage": "design"}).json()
    assert [(c["code"], c["met"]) for c in checklist] == [("brief", False), ("assessment", False)]

    assert _post(client, BRIEFS, {"product": prod.slug, **BRIEF_BODY}).status_code == 201
    body = assert_error(_post(client, REQUESTS, ask), 409, "gate_unmet")
    assert body["fields"]["criteria"] == ["assessment"]
    assert _post(client, ASSESSMENTS, {"product": prod.slug, **ASSESSMENT_BODY}).status_code == 201
    checklist = client.get(CHECKLIST, {"product": str(prod.pk), "to_stage": "design"}).json()
    assert all(c["met"] for c in checklist) and len(checklist) == 2

    seq = last_seq()
    response = _post(client, REQUESTS, ask)
    assert response.status_code == 201, response.data
    req = response.json()
    assert verbs_since(seq) == Counter({"lifecycle.requested": 1})
    assert req["product"] == {"id": str(prod.pk), "slug": prod.slug}
    assert (req["kind"], req["from_stage"], req["to_stage"], req["state"]) == (
        "stage",
        "concept",
        "design",
        "pending",
    )
    assert req["requested_by"] == pm.username and req["decided_by"] is None
    assert len(req["fingerprint"]) == 64 and req["evidence"] == []
    approve = f"{REQUESTS}{req['id']}/approve/"

    # One pending request per product.
    assert_error(_post(client, REQUESTS, ask), 409, "pending")

    seq = last_seq()
    body = assert_error(
        _post(client, approve, {"password": PASSWORD, "comment": "Mine."}),
        403,
        "separation_of_duties",
    )
    body = assert_error(
        _post(signer, approve, {"password": "wrong", "comment": "Read."}),
        403,
        "bad_signature",
    )
    assert "password" in body["fields"]
    assert verbs_since(seq) == Counter({"signature.failed": 1})
    assert_error(_post(developer, approve, {"password": PASSWORD}), 403, "not_a_signer")
    assert_error(_post(signer, approve, {}), 400, "invalid")

    seq = last_seq()
    response = _post(signer, approve, {"password": PASSWORD, "comment": "Brief read."})
    assert response.status_code == 200, response.data
    signed = response.json()
    assert "password" not in signed
    assert (signed["state"], signed["decided_by"], signed["decided_role"]) == (
        "approved",
        reviewer.username,
        REVIEWER,
    )
    assert signed["decision_comment"] == "Brief read." and signed["decided_at"]
    assert [(c["code"], c["met"]) for c in signed["evidence"]] == [
        ("brief", True),
        ("assessment", True),
    ]
    assert verbs_since(seq) == Counter({"lifecycle.approved": 1, "product.stage_changed": 1})
    prod.refresh_from_db()
    assert prod.stage == "design"
    assert client.get(f"/api/v1/products/{prod.pk}/").json()["stage"] == "design"
    # Decided: it cannot be signed again or withdrawn.
    assert_error(_post(signer, approve, {"password": PASSWORD}), 409)
    assert_error(_post(client, f"{REQUESTS}{req['id']}/withdraw/", {}), 409)


def test_reject_needs_a_reason_and_a_signature(client_for, pm, reviewer):
    req = _requested(pm)
    url = f"{REQUESTS}{req.pk}/reject/"
    client = client_for(reviewer)
    seq = last_seq()
    assert "comment" in assert_error(_post(client, url, {"password": PASSWORD}), 400)["fields"]
    assert_error(
        _post(client, url, {"password": "nope", "comment": "Vague."}), 403, "bad_signature"
    )
    assert verbs_since(seq) == Counter({"signature.failed": 1})
    seq = last_seq()
    response = _post(client, url, {"password": PASSWORD, "comment": "Too vague."})
    assert response.status_code == 200, response.data
    assert (response.json()["state"], response.json()["decision_comment"]) == (
        "rejected",
        "Too vague.",
    )
    assert verbs_since(seq) == Counter({"lifecycle.rejected": 1})
    req.product.refresh_from_db()
    assert req.product.stage == "concept"


def test_only_the_requester_or_an_admin_withdraws(client_for, pm, reviewer):
    req = _requested(pm)
    url = f"{REQUESTS}{req.pk}/withdraw/"
    admin = client_for(team_member(pm, ADMIN))
    assert_error(_post(client_for(reviewer), url, {}), 403, "forbidden")
    seq = last_seq()
    response = _post(admin, url, {})
    assert response.status_code == 200, response.data
    assert response.json()["state"] == "withdrawn"
    assert verbs_since(seq) == Counter({"lifecycle.withdrawn": 1})


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"to_stage": "limbo"}, 400, "invalid"),
        ({"to_stage": "production"}, 409, "invalid_transition"),
        ({"sunset_at": "2099-01-01T00:00:00Z"}, 400, "invalid"),
        ({"sunset_at": "tomorrow"}, 400, "invalid"),
        ({"successor": "no-such-api"}, 400, "invalid"),
        ({"comment": "x" * 5001}, 400, "invalid"),
    ],
)
def test_bad_stage_requests(client_for, pm, change, status, code):
    prod = _ready(pm)
    client = client_for(pm)
    seq = last_seq()
    body = {"product": prod.slug, "to_stage": "design", **change}
    error = assert_error(_post(client, REQUESTS, body), status, code)
    if change.get("to_stage") == "limbo":
        assert "concept, design" in error["message"]
    assert verbs_since(seq) == Counter()


def test_requests_out_of_scope_are_404(client_for, pm):
    req = _requested(pm)
    outsider = client_for(member(PRODUCT_MANAGER))
    assert_error(outsider.get(f"{REQUESTS}{req.pk}/"), 404)
    for name, body in (("approve", {"password": PASSWORD}), ("reject", {"password": PASSWORD})):
        assert_error(_post(outsider, f"{REQUESTS}{req.pk}/{name}/", body), 404)
    assert_error(outsider.get(f"{REQUESTS}not-a-uuid/"), 404)
    body = assert_error(
        _post(outsider, REQUESTS, {"product": req.product.slug, "to_stage": "design"}), 404
    )
    assert body["code"] == "not_found"


def test_an_auditor_reads_everything_and_writes_nothing(client_for, pm):
    """GIVEN an auditor WHEN they read THEN every team's objects; WHEN they write anything
    THEN 403 and no audit event."""
    prod = _ready(pm)
    req = _requested(pm, prod)
    auditor = client_for(member(AUDITOR))
    assert auditor.get(f"{REQUESTS}{req.pk}/").status_code == 200
    assert auditor.get(BRIEFS, {"product": prod.slug}).json()["count"] == 1
    assert auditor.get(CHECKLIST, {"product": prod.slug, "to_stage": "design"}).status_code == 200
    gate = GateDefinition.objects.get(risk_class=prod.risk_class, stage="design")
    seq = last_seq()
    writes = [
        (BRIEFS, {"product": prod.slug, **BRIEF_BODY, "problem_statement": "Another."}),
        (ASSESSMENTS, {"product": prod.slug, **ASSESSMENT_BODY}),
        (REQUESTS, {"product": prod.slug, "to_stage": "retired"}),
        (f"{REQUESTS}{req.pk}/approve/", {"password": PASSWORD}),
        (f"{REQUESTS}{req.pk}/reject/", {"password": PASSWORD, "comment": "No."}),
        (f"{REQUESTS}{req.pk}/withdraw/", {}),
        (
            GATES,
            {"risk_class": "high", "stage": "design", "criteria": [], "signer_roles": ["admin"]},
        ),
    ]
    for url, body in writes:
        assert_error(_post(auditor, url, body), 403)
    assert_error(auditor.patch(f"{GATES}{gate.pk}/", {"criteria": []}, format="json"), 403)
    assert verbs_since(seq) == Counter()


def test_anonymous_is_401_everywhere(pm):
    req = _requested(pm)
    client = APIClient()
    for url in (BRIEFS, ASSESSMENTS, REQUESTS, GATES, f"{CHECKLIST}?product=x&to_stage=design"):
        assert_error(client.get(url), 401)
    assert_error(client.get(f"{METRICS}?product=x"), 401)
    assert_error(_post(client, f"{REQUESTS}{req.pk}/approve/", {"password": PASSWORD}), 401)


# --- gate definitions --------------------------------------------------------------------------


def test_gate_definitions_are_read_by_everyone_and_set_by_admins(client_for, pm):
    gate = GateDefinition.objects.get(risk_class="minimal", stage="design")
    client, admin = client_for(pm), client_for(member(ADMIN))
    rows = client.get(GATES, {"risk_class": "minimal"}).json()["results"]
    assert len(rows) == 7
    design = next(r for r in rows if r["stage"] == "design")
    assert design["criteria"] == ["brief", "assessment"]
    assert client_for(member(DEVELOPER)).get(f"{GATES}{gate.pk}/").status_code == 200

    body = {"risk_class": "minimal", "stage": "design", "criteria": [], "signer_roles": ["admin"]}
    seq = last_seq()
    assert_error(_post(client, GATES, body), 403)
    assert_error(client.patch(f"{GATES}{gate.pk}/", {"criteria": []}, format="json"), 403)
    assert verbs_since(seq) == Counter()

    response = _post(admin, GATES, {**body, "criteria": ["brief"]})
    assert response.status_code == 200, response.data  # the seeded row is replaced
    assert response.json()["id"] == str(gate.pk)
    assert verbs_since(seq) == Counter({"gate.set": 1})
    seq = last_seq()
    response = admin.patch(
        f"{GATES}{gate.pk}/", {"signer_roles": ["admin", "reviewer"]}, format="json"
    )
    assert response.status_code == 200, response.data
    assert (response.json()["criteria"], response.json()["signer_roles"]) == (
        ["brief"],
        ["admin", "reviewer"],
    )
    assert verbs_since(seq) == Counter({"gate.set": 1})
    # The gate is what the checklist reads.
    prod = product(pm)
    checklist = client.get(CHECKLIST, {"product": prod.slug, "to_stage": "design"}).json()
    assert [c["code"] for c in checklist] == ["brief"]


def test_a_deleted_gate_is_created_again_with_201(client_for):
    GateDefinition.objects.filter(risk_class="high", stage="retired").first().delete()
    admin = client_for(member(ADMIN))
    body = {
        "risk_class": "high",
        "stage": "retired",
        "criteria": ["sunset_passed"],
        "signer_roles": ["admin"],
    }
    seq = last_seq()
    response = _post(admin, GATES, body)
    assert response.status_code == 201, response.data
    assert verbs_since(seq) == Counter({"gate.set": 1})


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"criteria": ["magic"]}, "criteria[0]"),
        ({"signer_roles": []}, "signer_roles"),
        ({"signer_roles": ["developer"]}, "signer_roles[0]"),
        ({"criteria": "brief"}, "criteria"),
        ({"stage": "production"}, "stage"),
        ({"risk_class": "high"}, "risk_class"),
    ],
)
def test_bad_gate_changes_are_400(client_for, body, field):
    gate = GateDefinition.objects.get(risk_class="minimal", stage="design")
    response = client_for(member(ADMIN)).patch(f"{GATES}{gate.pk}/", body, format="json")
    assert field in assert_error(response, 400, "invalid")["fields"]


def test_gate_definition_list_query_count(client_for, pm, django_assert_num_queries):
    """The 21 seeded gates (3 risk classes x 7 stages, a fixed set) in a fixed count."""
    client = client_for(pm)
    client.get(GATES)
    with django_assert_num_queries(3):
        response = client.get(GATES)
    assert response.json()["count"] == 21


# --- the checklist and the target metrics -------------------------------------------------------


def test_checklist_refuses_a_bad_stage_and_hides_other_teams(client_for, pm):
    prod = product(pm)
    client = client_for(pm)
    body = assert_error(client.get(CHECKLIST, {"product": prod.slug, "to_stage": "limbo"}), 400)
    assert "to_stage" in body["fields"] and "not a stage" in body["message"]
    assert "design" in body["message"]
    assert "to_stage" in assert_error(client.get(CHECKLIST, {"product": prod.slug}), 400)["fields"]
    assert "product" in assert_error(client.get(CHECKLIST, {"to_stage": "design"}), 400)["fields"]
    theirs = product(member(PRODUCT_MANAGER))
    for ref in (theirs.slug, str(theirs.pk), "nothing-here"):
        assert_error(client.get(CHECKLIST, {"product": ref, "to_stage": "design"}), 404)
    # A move back has no criteria.
    in_design_prod, _ = in_design(pm, team_member(pm, REVIEWER))
    response = client.get(CHECKLIST, {"product": in_design_prod.slug, "to_stage": "concept"})
    assert response.status_code == 200 and response.json() == []


def test_target_metrics_are_measured(client_for, pm):
    prod = product(pm)
    client = client_for(pm)
    assert client.get(METRICS, {"product": prod.slug}).json() == []
    brief(pm, prod, target_metrics=[{"metric": "p95_latency_ms", "threshold": 2000}])
    (row,) = client.get(METRICS, {"product": prod.slug}).json()
    assert row["target"] == {"metric": "p95_latency_ms", "op": "<=", "threshold": 2000}
    assert (row["value"], row["met"], row["source"], row["trend"]) == (None, None, "gateway", [])
    assert row["label"] == "p95 latency ≤ 2000 ms"
    for latency in (120, 180, 900):
        ProviderCall.objects.create(product=prod, outcome="ok", latency_ms=latency, tokens_in=10)
    (row,) = client.get(METRICS, {"product": str(prod.pk)}).json()
    assert row["met"] is True and row["value"] <= 2000 and row["trend"]
    assert "3 calls" in row["detail"]
    theirs = product(member(PRODUCT_MANAGER))
    assert_error(client.get(METRICS, {"product": theirs.slug}), 404)
    assert_error(client.get(METRICS), 400, "invalid")

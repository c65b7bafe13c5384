"""The lifecycle's services: briefs and their change requests, the assessment and its estimate,
stage gates with signed decisions, gate definitions as data, and planned retirement."""

import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.accounts.roles import ADMIN, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.catalog import services as catalog
from apps.catalog.models import Stage
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.gateway.models import Provider, ProviderCall, ProviderPrice
from apps.lifecycle import gates, selectors
from apps.lifecycle import services as lifecycle
from apps.lifecycle.models import BriefStatus, GateDefinition, RequestState
from apps.portal import services as portal
from apps.portal.models import APIKey, APIStatus, SubscriptionState, UsageRecord
from tests.api_suite import last_seq, verbs_since
from tests.evaluations.gate_helpers import finish, make_run
from tests.factories import PASSWORD, member, model_version, product, release
from tests.portal.service_factories import api as published_api
from tests.portal.service_factories import application, eager_tasks, mails, plan  # noqa: F401

from .helpers import assessment, brief, in_design, signed_move, team_member

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm():
    return member(PRODUCT_MANAGER)


@pytest.fixture
def reviewer(pm):
    return team_member(pm, REVIEWER)


def codes(checks):
    return {c.code: c.met for c in checks}


# --- briefs ----------------------------------------------------------------------------------


def test_a_brief_in_concept_is_in_force_at_once_and_versioned(pm):
    prod = product(pm)
    seq = last_seq()
    first = brief(pm, prod)
    assert first.version == 1 and first.status == BriefStatus.IN_FORCE
    assert len(first.content_hash) == 64
    with pytest.raises(Conflict) as same:
        brief(pm, prod)
    assert same.value.code == "unchanged"
    second = brief(pm, prod, problem_statement="Agents answer slowly.")
    first.refresh_from_db()
    assert (second.version, second.status, first.status) == (2, "in_force", "superseded")
    assert verbs_since(seq) == Counter({"brief.created": 2})


@pytest.mark.parametrize(
    ("field", "value", "where"),
    [
        ("user_stories", [{"as_a": "agent", "i_want": "x"}], "user_stories[0]"),
        ("target_metrics", [{"metric": "speed", "threshold": 1}], "target_metrics[0].metric"),
        ("target_metrics", [{"metric": "pass_rate", "threshold": 0.9}], "target_metrics[0].suite"),
        (
            "target_metrics",
            [{"metric": "pass_rate", "suite": "nope", "threshold": 0.9}],
            "target_metrics[0].suite",
        ),
        (
            "target_metrics",
            [{"metric": "error_rate", "threshold": 3}],
            "target_metrics[0].threshold",
        ),
        ("data_strategy", {"where": "x"}, "data_strategy"),
        (
            "target_metrics",
            [{"metric": "p95_latency_ms", "threshold": "nan"}],
            "target_metrics[0].threshold",
        ),
    ],
)
def test_bad_brief_input_names_the_field(pm, field, value, where):
    prod = product(pm)
    with pytest.raises(ApplicationError) as exc:
        lifecycle.brief_create(
            actor=pm, product=prod, problem_statement="A problem.", **{field: value}
        )
    assert exc.value.status == 400 and where in exc.value.extra, exc.value.extra


def test_after_design_a_brief_change_goes_through_a_signed_request(pm, reviewer):
    """GIVEN a product past design WHEN the pm writes a new brief THEN it is proposed with a
    request; the pm cannot sign it; the reviewer signs it and it comes into force."""
    prod, _ = in_design(pm, reviewer)
    signed_move(pm, reviewer, prod, "development")
    prod.refresh_from_db()
    new = brief(pm, prod, problem_statement="A sharper problem.")
    assert new.status == BriefStatus.PROPOSED
    (req,) = prod.lifecycle_requests.filter(state="pending")
    assert req.kind == "brief" and req.brief == new
    with pytest.raises(Forbidden) as own:
        lifecycle.request_approve(actor=pm, request=req, password=PASSWORD)
    assert own.value.code == "separation_of_duties"
    with pytest.raises(Forbidden) as bad:
        lifecycle.request_approve(actor=reviewer, request=req, password="wrong")
    assert bad.value.code == "bad_signature"
    with pytest.raises(Conflict):  # one pending brief change at a time
        brief(pm, prod, problem_statement="Yet another.")
    seq = last_seq()
    lifecycle.request_approve(actor=reviewer, request=req, password=PASSWORD, comment="Clearer.")
    new.refresh_from_db()
    assert new.status == BriefStatus.IN_FORCE
    assert prod.briefs.filter(status="in_force").count() == 1
    assert verbs_since(seq) == Counter({"lifecycle.approved": 1, "brief.in_force": 1})


def test_a_rejected_brief_change_never_comes_into_force(pm, reviewer):
    prod, _ = in_design(pm, reviewer)
    signed_move(pm, reviewer, prod, "development")
    prod.refresh_from_db()
    new = brief(pm, prod, problem_statement="Worse.")
    req = prod.lifecycle_requests.get(state="pending")
    with pytest.raises(ApplicationError):
        lifecycle.request_reject(actor=reviewer, request=req, password=PASSWORD, comment="")
    lifecycle.request_reject(actor=reviewer, request=req, password=PASSWORD, comment="Vaguer.")
    new.refresh_from_db()
    assert new.status == BriefStatus.REJECTED
    assert prod.briefs.get(status="in_force").version == 1


# --- the assessment --------------------------------------------------------------------------


def test_assessment_is_validated_audited_and_priced(pm):
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
    with pytest.raises(ApplicationError) as exc:
        assessment(pm, prod, risks=[{"title": "x", "likelihood": 9, "severity": 1}])
    assert "risks[0].likelihood" in exc.value.extra
    with pytest.raises(ApplicationError) as exc:
        assessment(pm, prod, calls_per_month=2**31)
    assert "calls_per_month" in exc.value.extra
    seq = last_seq()
    a = assessment(pm, prod, model_version=mv)
    # 10,000 calls x (500 x $2 + 200 x $8) / 1M = $26.00 a month
    assert lifecycle.monthly_estimate(a) == Decimal("26.00")
    assessment(pm, prod, model_version=mv, calls_per_month=20_000)
    assert verbs_since(seq) == Counter({"assessment.created": 1, "assessment.updated": 1})
    a.refresh_from_db()
    assert lifecycle.monthly_estimate(a) == Decimal("52.00")
    with pytest.raises(Forbidden):
        assessment(team_member(pm, REVIEWER), prod)


# --- stage gates -----------------------------------------------------------------------------


def test_design_needs_the_brief_and_the_assessment(pm, reviewer):
    prod = product(pm)
    assert codes(gates.checklist(prod, "design")) == {"brief": False, "assessment": False}
    with pytest.raises(Conflict) as exc:
        lifecycle.stage_request_create(actor=pm, product=prod, to_stage="design")
    assert exc.value.code == "gate_unmet"
    assert exc.value.extra["criteria"] == ["brief", "assessment"]
    brief(pm, prod)
    assessment(pm, prod)
    assert codes(gates.checklist(prod, "design")) == {"brief": True, "assessment": True}
    developer = team_member(pm, DEVELOPER)
    seq = last_seq()
    req = lifecycle.stage_request_create(actor=pm, product=prod, to_stage="design")
    with pytest.raises(Forbidden) as own:
        lifecycle.request_approve(actor=pm, request=req, password=PASSWORD)
    assert own.value.code == "separation_of_duties"
    with pytest.raises(Forbidden) as role:
        lifecycle.request_approve(actor=developer, request=req, password=PASSWORD)
    assert role.value.code == "not_a_signer"
    req = lifecycle.request_approve(
        actor=reviewer, request=req, password=PASSWORD, comment="Brief and assessment read."
    )
    prod.refresh_from_db()
    assert prod.stage == "design" and req.state == RequestState.APPROVED
    assert (req.decided_by, req.decided_role) == (reviewer, REVIEWER)
    assert [c["code"] for c in req.evidence] == ["brief", "assessment"]
    assert req.signed_fingerprint == req.fingerprint
    assert verbs_since(seq) == Counter(
        {"lifecycle.requested": 1, "lifecycle.approved": 1, "product.stage_changed": 1}
    )


def test_development_needs_a_reviewer_in_the_owner_team(pm):
    admin = team_member(pm, ADMIN)
    prod, _ = in_design(pm, admin)
    assert codes(gates.checklist(prod, "development")) == {"team_reviewer": False}
    team_member(pm, REVIEWER)
    assert codes(gates.checklist(prod, "development")) == {"team_reviewer": True}


def test_validation_needs_a_candidate_release_and_every_target_suite_run(pm, reviewer):
    prod, sv = in_design(pm, reviewer)
    signed_move(pm, reviewer, prod, "development")
    prod.refresh_from_db()
    assert codes(gates.checklist(prod, "validation")) == {
        "candidate_release": False,
        "target_suites_run": False,
    }
    from apps.releases.services import release_freeze

    rel = release_freeze(actor=pm, release=release(pm, prod))
    checks = codes(gates.checklist(prod, "validation"))
    assert checks == {"candidate_release": True, "target_suites_run": False}
    finish(make_run(pm, sv, rel))
    assert all(codes(gates.checklist(prod, "validation")).values())
    signed_move(pm, reviewer, prod, "validation")
    prod.refresh_from_db()
    assert prod.stage == "validation"


def test_production_needs_a_governed_change_and_the_targets_met(pm, reviewer):
    """GIVEN a product in validation whose brief targets a suite's pass rate ≥ 0.9
    THEN production is refused until a change request is implemented under a policy with
    required approvers AND the released release's latest run of the suite meets the target."""
    from apps.changes import services as changes
    from apps.releases.services import release_freeze

    prod, sv = in_design(pm, reviewer)
    signed_move(pm, reviewer, prod, "development")
    prod.refresh_from_db()
    rel = release_freeze(actor=pm, release=release(pm, prod))
    finish(make_run(pm, sv, rel), {"farewell": "fail"})  # pass rate 0.5
    signed_move(pm, reviewer, prod, "validation")
    prod.refresh_from_db()
    assert codes(gates.checklist(prod, "production")) == {
        "governed_change": False,
        "targets_met": False,
    }
    changes.approval_policy_set(
        actor=team_member(pm, ADMIN),
        product=prod,
        stage="validation",
        required_roles=[{"role": "reviewer"}],
    )
    cr = changes.change_request_submit(
        actor=pm,
        cr=changes.change_request_create(
            actor=pm, product=prod, title="First release", rationale="Go live.", proposed=rel
        ),
    )
    cr, _ = changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    changes.change_request_implement(actor=pm, cr=cr)
    checks = gates.checklist(prod, "production")
    assert codes(checks) == {"governed_change": True, "targets_met": False}
    assert "Pass rate" in next(c.detail for c in checks if c.code == "targets_met")
    finish(make_run(pm, sv, rel))  # a newer run passes every case
    checks = gates.checklist(prod, "production")
    assert codes(checks) == {"governed_change": True, "targets_met": False}
    assert "p95 latency" in next(c.detail for c in checks if c.code == "targets_met")
    for latency in (120, 180, 2500):  # p95 of the last 7 days' calls: 2500 ms
        ProviderCall.objects.create(
            product=prod, release=rel, outcome="ok", latency_ms=latency, tokens_in=10
        )
    assert not all(codes(gates.checklist(prod, "production")).values())
    ProviderCall.objects.filter(latency_ms=2500).update(latency_ms=900)
    assert all(codes(gates.checklist(prod, "production")).values())
    req = lifecycle.stage_request_create(actor=pm, product=prod, to_stage="production")
    req = lifecycle.request_approve(actor=reviewer, request=req, password=PASSWORD)
    prod.refresh_from_db()
    assert prod.stage == "production"
    assert {c["code"]: c["met"] for c in req.evidence} == {
        "governed_change": True,
        "targets_met": True,
    }


def test_the_criteria_are_checked_again_when_signing(pm, reviewer):
    prod = product(pm)
    first = brief(pm, prod)
    assessment(pm, prod)
    req = lifecycle.stage_request_create(actor=pm, product=prod, to_stage="design")
    # The assessment loses its risks after the request was made.
    assessment(pm, prod, risks=[])
    with pytest.raises(Conflict) as exc:
        lifecycle.request_approve(actor=reviewer, request=req, password=PASSWORD)
    assert exc.value.code == "gate_unmet" and exc.value.extra["criteria"] == ["assessment"]
    prod.refresh_from_db()
    assert prod.stage == "concept" and first.status == "in_force"


def test_gate_definitions_are_data_editable_by_admins(pm, reviewer):
    admin = member(ADMIN)
    assert GateDefinition.objects.filter(risk_class="minimal", stage="design").exists()
    with pytest.raises(Forbidden):
        lifecycle.gate_set(
            actor=pm, risk_class="minimal", stage="design", criteria=[], signer_roles=["admin"]
        )
    with pytest.raises(ApplicationError) as exc:
        lifecycle.gate_set(
            actor=admin,
            risk_class="minimal",
            stage="design",
            criteria=["magic"],
            signer_roles=["admin"],
        )
    assert "magic" in exc.value.message
    seq = last_seq()
    lifecycle.gate_set(
        actor=admin,
        risk_class="minimal",
        stage="design",
        criteria=["brief"],
        signer_roles=["admin"],
    )
    assert verbs_since(seq) == Counter({"gate.set": 1})
    prod = product(pm)
    brief(pm, prod)
    assert codes(gates.checklist(prod, "design")) == {"brief": True}
    req = lifecycle.stage_request_create(actor=pm, product=prod, to_stage="design")
    with pytest.raises(Forbidden) as role:  # only an admin signs this gate now
        lifecycle.request_approve(actor=reviewer, request=req, password=PASSWORD)
    assert role.value.code == "not_a_signer"
    lifecycle.request_approve(actor=team_member(pm, ADMIN), request=req, password=PASSWORD)


def test_high_risk_products_need_an_admin_to_sign_production():
    assert gates.default_gate("high", "production")["signer_roles"] == ["admin"]
    assert "assessment" in gates.default_gate("high", "validation")["criteria"]


def test_a_stage_is_not_set_directly(pm):
    prod = product(pm)
    with pytest.raises(Conflict) as exc:
        catalog.require_stage_request(actor=pm, product=prod, to_stage="design")
    assert exc.value.code == "gate_required"
    with pytest.raises(Forbidden) as created:
        catalog.product_create(
            actor=pm, slug="late", name="Late", owner_team=prod.owner_team, stage="production"
        )
    assert created.value.code == "gate_required"


def test_withdraw_and_one_pending_request_at_a_time(pm, reviewer):
    prod = product(pm)
    brief(pm, prod)
    assessment(pm, prod)
    req = lifecycle.stage_request_create(actor=pm, product=prod, to_stage="design")
    with pytest.raises(Conflict) as exc:
        lifecycle.stage_request_create(actor=pm, product=prod, to_stage="design")
    assert exc.value.code == "pending"
    with pytest.raises(Forbidden):
        lifecycle.request_withdraw(actor=reviewer, request=req)
    req = lifecycle.request_withdraw(actor=pm, request=req)
    assert req.state == RequestState.WITHDRAWN
    lifecycle.stage_request_create(actor=pm, product=prod, to_stage="design")


def test_an_idea_dropped_before_release_retires_without_a_sunset(pm, reviewer):
    prod = product(pm)
    assert codes(gates.checklist(prod, "retired")) == {"sunset_passed": True}
    signed_move(pm, reviewer, prod, "retired", comment="Not worth building.")
    prod.refresh_from_db()
    assert prod.stage == "retired"


# --- planned retirement ----------------------------------------------------------------------


def _in_production_with_subscribers(pm, reviewer):
    """A product in production (moved directly: the gates are tested above) with a published
    API, an active subscriber with a key, and a second API of another product as successor."""
    from tests.changes.helpers import released

    rel = released(pm)
    prod = rel.product
    for stage in ("design", "development", "validation", "production"):
        catalog.product_transition(actor=pm, product=prod, to_stage=stage)
    prod.refresh_from_db()
    api = published_api(pm, rel)
    free = plan(pm, api)
    dev = member(DEVELOPER)
    app = application(dev)
    sub = portal.subscription_request(actor=dev, application=app, plan=free)
    key = portal.key_create(actor=dev, application=app, name="k").key
    successor = published_api(pm, released(pm))
    return prod, api, sub, key, successor, dev


def test_deprecating_a_product_deprecates_its_apis_and_tells_subscribers(pm, reviewer, mails):  # noqa: F811
    prod, api, _sub, _key, successor, dev = _in_production_with_subscribers(pm, reviewer)
    checks = codes(gates.checklist(prod, "deprecated"))
    assert checks == {"sunset_date": False, "migration_note": False}
    sunset = timezone.now() + timedelta(days=30)
    with mails() as outbox:
        req = signed_move(
            pm,
            reviewer,
            prod,
            "deprecated",
            sunset_at=sunset,
            migration_note="Move to the successor by March.",
            successor=successor,
        )
    prod.refresh_from_db()
    api.refresh_from_db()
    assert prod.stage == "deprecated" and req.sunset_at == sunset
    assert (api.status, api.sunset_at, api.successor_id) == (
        APIStatus.DEPRECATED,
        sunset,
        successor.pk,
    )
    assert [m.to for m in outbox] == [[dev.email]]
    assert "Move to the successor by March." in outbox[0].body
    # The subscriber has not called the successor yet; once they have, they are migrated.
    (row,) = selectors.migration_status_for(product=prod)
    assert (row["owner"], row["api"], row["migrated"]) == (dev, api, False)
    successor_sub = portal.subscription_request(
        actor=dev, application=row["application"], plan=plan(pm, successor)
    )
    UsageRecord.objects.create(
        created_at=timezone.now(),
        subscription=successor_sub,
        api=successor,
        application=row["application"],
        key=APIKey.objects.get(application=row["application"]),
        endpoint="chat",
        status_code=200,
        outcome="ok",
    )
    (row,) = selectors.migration_status_for(product=prod)
    assert row["migrated"] is True
    # Not yet: the retirement gate waits for the sunset date.
    assert codes(gates.checklist(prod, "retired")) == {"sunset_passed": False}
    assert lifecycle.product_sunset(request=req)["due"] is False


def test_at_the_sunset_date_apis_retire_keys_stop_and_the_product_is_read_only(pm, reviewer):
    prod, api, sub, key, _successor, _dev = _in_production_with_subscribers(pm, reviewer)
    sunset = timezone.now() + timedelta(days=30)
    req = signed_move(
        pm, reviewer, prod, "deprecated", sunset_at=sunset, migration_note="Use the successor."
    )
    later = sunset + timedelta(minutes=1)
    assert [r.pk for r in lifecycle.sunsets_due(later)] == [req.pk]
    seq = last_seq()
    report = lifecycle.product_sunset(request=req, now=later)
    assert report["due"] is True and report["apis"] == [api.slug]
    assert (report["subscriptions_cancelled"], report["keys_revoked"]) == (1, 1)
    prod.refresh_from_db()
    api.refresh_from_db()
    sub.refresh_from_db()
    key = APIKey.objects.get(pk=key.pk)
    assert prod.stage == Stage.RETIRED
    assert api.status == APIStatus.RETIRED
    assert sub.state == SubscriptionState.CANCELLED
    assert key.revoked_at == later
    verbs = verbs_since(seq)
    assert verbs["product.sunset"] == 1 and verbs["payloads.purged"] == 1
    assert verbs["product.stage_changed"] == 1 and verbs["api.retired"] == 1
    # Read-only from now on, and a second run finds nothing due.
    with pytest.raises(Conflict) as exc:
        catalog.product_update(actor=pm, product=prod, name="Renamed")
    assert exc.value.code == "retired"
    with pytest.raises(Conflict):
        brief(pm, prod, problem_statement="Too late.")
    from apps.changes import services as changes

    for write in (
        lambda: release(pm, prod, version="9.0.0"),
        lambda: changes.approval_policy_set(
            actor=team_member(pm, ADMIN), product=prod, stage="retired", required_roles=[]
        ),
        lambda: portal.api_update(actor=pm, api=api, name="Renamed"),
        lambda: plan(pm, api, slug="late"),
    ):
        with pytest.raises(Conflict) as refused:
            write()
        assert refused.value.code in ("retired", "invalid_transition"), refused.value.code
    assert lifecycle.product_sunset(request=req, now=later)["due"] is False
    assert lifecycle.sunsets_due(later) == []


def test_the_sunset_task_retires_what_is_due(pm, reviewer, eager_tasks):  # noqa: F811
    """The beat task itself (run eagerly here): it finds the due deprecation and retires it."""
    from apps.lifecycle.tasks import sunset_due_task

    prod, api, *_ = _in_production_with_subscribers(pm, reviewer)
    signed_move(
        pm,
        reviewer,
        prod,
        "deprecated",
        sunset_at=timezone.now() + timedelta(seconds=1),
        migration_note="Use the successor.",
    )
    assert sunset_due_task.apply().get() == []  # not due yet
    time.sleep(1.1)  # the sunset date passes
    (report,) = sunset_due_task.apply().get()
    assert (report["product"], report["due"], report["apis"]) == (prod.slug, True, [api.slug])
    prod.refresh_from_db()
    assert prod.stage == Stage.RETIRED


def test_the_sunset_task_is_in_the_beat_schedule():
    from plmportal.celery import app

    app.loader.import_default_modules()
    entries = {e["task"] for e in app.conf.beat_schedule.values()}
    assert "lifecycle.sunset_due" in entries

"""The evaluation gate of change requests: starting the runs on submit, the verdict (pending,
passed, failed for each reason), approve and implement refused until it passes, the evidence a
signature stores, the policy's validation, the API and the change-request page."""

from collections import Counter
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.audit.models import AuditEvent
from apps.changes import services as changes
from apps.changes.models import Approval, ChangeRequest
from apps.core.exceptions import ApplicationError
from apps.evaluations.gate import gate_status
from apps.evaluations.models import EvalRun, RunState
from apps.evaluations.services import suite_version_create, suite_version_deprecate
from tests.api_suite import last_seq, verbs_since
from tests.changes.helpers import PASSWORD, proposal, released, team_reviewer
from tests.changes.test_views import DETAIL_QUERIES
from tests.evaluations.factories import case_dict, suite, suite_with_cases
from tests.evaluations.gate_helpers import (
    finish,
    gated_cr,
    make_run,
    runs_of,
    team_of,
)
from tests.factories import member

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm():
    return member("product_manager")


@pytest.fixture
def reviewer(pm):
    return team_reviewer(pm)


def _approve(reviewer, cr, **kw):
    return changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD, **kw)


def _refused(fn, code: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        fn()
    assert caught.value.code == code, caught.value.message
    assert caught.value.status == 409
    return caught.value


# --- no gate: nothing changes ---------------------------------------------------------------------


def test_without_a_gate_nothing_changes(pm, reviewer):
    baseline = released(pm)
    cr = changes.change_request_create(
        actor=pm,
        product=baseline.product,
        title="No gate",
        rationale="r",
        proposed=proposal(pm, baseline),
    )
    cr = changes.change_request_submit(actor=pm, cr=cr)
    status = gate_status(cr)
    assert (status.required, status.passed, status.pending) == (False, True, False)
    assert not EvalRun.objects.exists()
    cr, approval = _approve(reviewer, cr)
    assert cr.state == "approved"
    assert approval.evidence == {}
    assert changes.change_request_implement(actor=pm, cr=cr).state == "implemented"


# --- starting the runs ----------------------------------------------------------------------------


def test_submit_starts_the_baseline_and_the_proposed_runs(pm):
    """GIVEN a gate on a suite with versions 1 and 2
    WHEN the change is submitted
    THEN the latest version runs against the baseline and the proposed release, both tied to the
    change, and the trail says so."""
    cr, v1 = gated_cr(pm, submit=False)
    v2 = suite_version_create(actor=pm, suite=v1.suite, cases=[case_dict(k) for k in "xyz"])
    seq = last_seq()
    cr = changes.change_request_submit(actor=pm, cr=cr)
    baseline, proposed = runs_of(cr)
    assert (baseline.release_id, baseline.cr_role) == (cr.baseline_id, "baseline")
    assert (proposed.release_id, proposed.cr_role) == (cr.proposed_id, "proposed")
    assert baseline.suite_version_id == proposed.suite_version_id == v2.pk
    assert baseline.state == proposed.state == RunState.QUEUED
    verbs = verbs_since(seq)
    assert verbs["eval_run.created"] == 2
    assert verbs["evaluation_gate.started"] == 1
    event = AuditEvent.objects.get(verb="evaluation_gate.started")
    assert event.object_id == str(cr.pk)
    assert event.after["proposed_run"] == str(proposed.pk)
    assert event.after["reused_baseline"] is False


@pytest.mark.parametrize("state", [RunState.SUCCEEDED, RunState.RUNNING])
def test_a_baseline_run_that_succeeded_or_is_going_is_reused(pm, state):
    cr, sv = gated_cr(pm, submit=False)
    earlier = make_run(pm, sv, cr.baseline)
    finish(earlier, state=state) if state == RunState.SUCCEEDED else finish(earlier, partial=1)
    cr = changes.change_request_submit(actor=pm, cr=cr)
    assert not EvalRun.objects.filter(change_request=cr, cr_role="baseline").exists()
    assert EvalRun.objects.filter(change_request=cr, cr_role="proposed").count() == 1
    assert gate_status(cr).baseline_run == earlier
    event = AuditEvent.objects.get(verb="evaluation_gate.started")
    assert (event.after["baseline_run"], event.after["reused_baseline"]) == (str(earlier.pk), True)


def test_a_failed_baseline_run_is_not_reused(pm):
    cr, sv = gated_cr(pm, submit=False)
    finish(make_run(pm, sv, cr.baseline), state=RunState.FAILED)
    cr = changes.change_request_submit(actor=pm, cr=cr)
    baseline, _ = runs_of(cr)
    assert baseline is not None and baseline.state == RunState.QUEUED


def test_a_first_release_runs_the_proposed_release_only(pm, reviewer):
    cr, _ = gated_cr(pm, baseline=False)
    baseline, proposed = runs_of(cr)
    assert baseline is None and proposed is not None
    finish(proposed)
    status = gate_status(cr)
    assert status.passed
    assert {c.key: c.state for c in status.checks}["no_regressions"] == "skipped"
    assert _approve(reviewer, cr)[0].state == "approved"


def test_submit_is_refused_when_the_gate_cannot_run(pm):
    """GIVEN the gate's suite has only a deprecated version
    THEN submitting is refused (409) and the change stays a draft, with no run."""
    cr, sv = gated_cr(pm, submit=False)
    suite_version_deprecate(actor=pm, version=sv, reason="Superseded.")
    error = _refused(lambda: changes.change_request_submit(actor=pm, cr=cr), "gate_unavailable")
    assert "no current version" in error.message
    assert ChangeRequest.objects.get(pk=cr.pk).state == "draft"
    assert not EvalRun.objects.exists()


# --- the verdict ----------------------------------------------------------------------------------


def test_pending_while_the_runs_go(pm):
    cr, _ = gated_cr(pm)
    status = gate_status(cr)
    assert (status.state, status.pending, status.passed) == ("pending", True, False)
    assert "still going" in status.reasons[0]
    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed, partial=1)
    status = gate_status(cr)
    assert status.pending
    assert status.reasons == [
        "the runs are still going (baseline 3/3 cases succeeded, proposed 1/3 cases running)"
    ]
    assert [r.change for r in status.comparison.rows] == ["unchanged", "pending", "pending"]
    assert {c.key: c.state for c in status.checks} == {
        "runs": "pending",
        "pass_rate": "pending",
        "no_regressions": "pending",
    }


def test_passed(pm):
    cr, _ = gated_cr(pm, min_pass_rate=0.6, max_cost_increase=0.1)
    baseline, proposed = runs_of(cr)
    finish(baseline, {"gamma": "fail"})
    finish(proposed, {"gamma": "fail"})
    status = gate_status(cr)
    assert (status.state, status.passed, status.reasons) == ("passed", True, [])
    assert {c.key: c.state for c in status.checks} == {
        "runs": "passed",
        "pass_rate": "passed",
        "no_regressions": "passed",
        "cost": "passed",
    }
    evidence = status.evidence()
    assert evidence["baseline_run"] == str(baseline.pk)
    assert evidence["proposed_run"] == str(proposed.pk)
    assert evidence["gate"]["pass_rate"] == pytest.approx(2 / 3)
    assert evidence["gate"]["regressed"] == []
    assert evidence["gate"]["cost_increase"] == 0


def test_failed_by_a_regression(pm):
    cr, _ = gated_cr(pm, min_pass_rate=0.5)
    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed, {"beta": "fail"})
    status = gate_status(cr)
    assert status.state == "failed"
    assert status.reasons == ["1 case regressed: beta"]
    assert status.evidence()["gate"]["regressed"] == ["beta"]


def test_regressions_allowed_when_the_policy_says_so(pm):
    cr, _ = gated_cr(pm, min_pass_rate=0.5, no_regressions=False)
    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed, {"beta": "fail"})
    assert gate_status(cr).passed


def test_failed_by_the_pass_rate(pm):
    cr, _ = gated_cr(pm, min_pass_rate=0.9, no_regressions=False)
    baseline, proposed = runs_of(cr)
    finish(baseline, {"alpha": "fail"})
    finish(proposed, {"alpha": "fail"})
    status = gate_status(cr)
    assert status.state == "failed"
    assert status.reasons == ["pass rate 0.67 < 0.90 (2 of 3 cases passed)"]


def test_failed_by_the_cost(pm):
    cr, _ = gated_cr(pm, max_cost_increase=0.1)
    baseline, proposed = runs_of(cr)
    finish(baseline, cost="0.001")
    finish(proposed, cost="0.0015")
    status = gate_status(cr)
    assert status.state == "failed"
    assert status.reasons == ["cost +50% > +10% allowed (0.0045 vs 0.003)"]
    assert status.evidence()["gate"]["cost_increase"] == pytest.approx(0.5)


def test_the_cost_limit_is_skipped_when_the_baseline_cost_nothing(pm):
    cr, _ = gated_cr(pm, max_cost_increase=0.1)
    baseline, proposed = runs_of(cr)
    finish(baseline, cost="0")
    finish(proposed, cost="0.002")
    status = gate_status(cr)
    assert status.passed
    assert {c.key: c.state for c in status.checks}["cost"] == "skipped"


@pytest.mark.parametrize(
    ("state", "said"), [(RunState.FAILED, "failed: provider down"), (RunState.CANCELLED, "cancel")]
)
def test_failed_when_a_run_failed_or_was_cancelled(pm, state, said):
    cr, _ = gated_cr(pm)
    _, proposed = runs_of(cr)
    finish(proposed, state=state, error="provider down" if state == RunState.FAILED else "")
    status = gate_status(cr)  # the baseline still runs: the verdict is already certain
    assert status.state == "failed"
    assert said in status.reasons[0]
    assert "withdraw and submit again" in status.reasons[0]


def test_a_draft_has_not_started(pm):
    cr, _ = gated_cr(pm, submit=False)
    gate = changes.policy_in_force(cr.product)["evaluation_gate"]
    status = gate_status(cr, config=gate)
    assert status.state == "not_started"
    assert status.reasons == ["its runs start when the change is submitted"]
    assert gate_status(cr).required is False  # no policy copied yet


# --- approve and implement ------------------------------------------------------------------------


def test_approve_is_refused_while_pending_and_recorded_once_passed(pm, reviewer):
    cr, _ = gated_cr(pm)
    seq = last_seq()
    error = _refused(lambda: _approve(reviewer, cr), "gate_pending")
    assert error.message.startswith("The evaluation gate has not passed yet: the runs are still")
    assert "You can approve it once the gate has passed." in error.message
    # told before the password is checked: a wrong one is not even tried
    _refused(
        lambda: changes.change_request_approve(actor=reviewer, cr=cr, password="wrong"),
        "gate_pending",
    )
    assert verbs_since(seq) == Counter()
    assert not Approval.objects.exists()
    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed)
    cr, approval = _approve(reviewer, cr, comment="Evaluations are green.")
    assert cr.state == "approved"
    evidence = approval.evidence["evaluation"]
    assert evidence["state"] == "passed"
    assert evidence["baseline_run"] == str(baseline.pk)
    assert evidence["proposed_run"] == str(proposed.pk)
    assert evidence["gate"]["min_pass_rate"] == 1.0
    signed = AuditEvent.objects.get(verb="approval.signed")
    assert signed.after["evidence"]["evaluation"]["proposed_run"] == str(proposed.pk)
    approved = AuditEvent.objects.get(verb="change_request.approved")
    assert approved.after["gates"]["evaluation"]["state"] == "passed"
    cr = changes.change_request_implement(actor=pm, cr=cr)
    assert cr.state == "implemented"
    implemented = AuditEvent.objects.get(verb="change_request.implemented")
    assert implemented.after["gates"]["evaluation"]["baseline_run"] == str(baseline.pk)


def test_approve_is_refused_while_failed(pm, reviewer):
    cr, _ = gated_cr(pm)
    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed, {"alpha": "fail", "gamma": "error"})
    error = _refused(lambda: _approve(reviewer, cr), "gate_failed")
    assert "The evaluation gate failed: pass rate 0.33 < 1.00" in error.message
    assert "2 cases regressed: alpha, gamma" in error.message
    assert "fix the proposed release and submit the change again, or reject it" in error.message


def test_reject_is_allowed_and_keeps_the_evidence(pm, reviewer):
    cr, _ = gated_cr(pm, min_pass_rate=0.5)
    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed, {"alpha": "fail"})
    cr, approval = changes.change_request_reject(
        actor=reviewer, cr=cr, password=PASSWORD, comment="Alpha regressed."
    )
    assert cr.state == "rejected"
    assert approval.evidence["evaluation"]["state"] == "failed"
    assert approval.evidence["evaluation"]["reasons"] == ["1 case regressed: alpha"]


def test_implement_checks_the_gate_again(client, pm, reviewer):
    """GIVEN an approved change
    WHEN a newer run of the proposed release is started for it (a re-run) and still goes
    THEN implement is refused until it is done."""
    cr, sv = gated_cr(pm)
    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed)
    cr, _ = _approve(reviewer, cr)
    rerun = make_run(pm, sv, cr.proposed, change_request=cr, cr_role="proposed")
    error = _refused(lambda: changes.change_request_implement(actor=pm, cr=cr), "gate_pending")
    assert "You can implement it once the gate has passed." in error.message
    assert ChangeRequest.objects.get(pk=cr.pk).state == "approved"
    client.force_login(pm)
    html = client.get(reverse("change_detail", args=[cr.pk])).content.decode()
    assert 'disabled aria-describedby="implement-blocked"' in html
    assert "data-implement-blocked>The evaluation gate has not passed yet" in html
    finish(rerun)
    assert changes.change_request_implement(actor=pm, cr=cr).state == "implemented"


# --- the policy's validation ----------------------------------------------------------------------


def test_the_policy_gate_is_validated(pm):
    baseline = released(pm)
    prod = baseline.product
    own = suite_with_cases(pm)
    foreign = suite_with_cases(member("product_manager"))
    empty = suite(pm)
    admin = member("admin", team_of(pm))

    def set_gate(gate):
        return changes.approval_policy_set(
            actor=admin,
            product=prod,
            stage=prod.stage,
            required_roles=[{"role": "reviewer"}],
            evaluation_gate=gate,
        )

    for gate, said in (
        ({"suite": str(foreign.suite_id)}, "the gate must use a suite of the product's team"),
        ({"suite": "not-a-uuid"}, "no evaluation suite"),
        ({"suite": str(empty.pk)}, "has no version yet"),
        ({"suite": str(own.suite_id), "min_pass_rate": 1.5}, "between 0 and 1"),
        ({"suite": str(own.suite_id), "min_pass_rate": True}, "between 0 and 1"),
        ({"suite": str(own.suite_id), "no_regressions": "yes"}, "true or false"),
        ({"suite": str(own.suite_id), "max_cost_increase": -0.1}, "at least 0"),
        ({"suite": str(own.suite_id), "cost": 1}, "unknown keys cost"),
        ({"min_pass_rate": 0.5}, "evaluation_gate must be"),
    ):
        with pytest.raises(ApplicationError) as caught:
            set_gate(gate)
        assert said in caught.value.message, gate
        assert caught.value.status == 400
        assert "evaluation_gate" in caught.value.extra
    policy = set_gate({"suite": str(own.suite_id), "min_pass_rate": 1, "max_cost_increase": 0})
    assert policy.evaluation_gate == {
        "suite": str(own.suite_id),
        "min_pass_rate": 1.0,
        "no_regressions": True,
        "max_cost_increase": 0.0,
    }
    assert set_gate(None).evaluation_gate is None


def test_the_policy_api_validates_the_gate(client_for, pm):
    prod = released(pm).product
    own = suite_with_cases(pm)
    client = client_for(member("admin", team_of(pm)))
    base = {"product": str(prod.pk), "stage": prod.stage, "required_roles": [{"role": "reviewer"}]}
    for gate, field in (
        ({"suite": str(own.suite_id), "max_cost_increase": -1}, "max_cost_increase"),
        ({"suite": str(own.suite_id), "no_regressions": "maybe"}, "no_regressions"),
        ({"suite": str(suite_with_cases(member("product_manager")).suite_id)}, ""),
    ):
        response = client.post(
            "/api/v1/approval-policies/", {**base, "evaluation_gate": gate}, format="json"
        )
        assert response.status_code == 400, response.json()
        assert f"evaluation_gate.{field}".rstrip(".") in response.json()["fields"], response.json()
    response = client.post(
        "/api/v1/approval-policies/",
        {**base, "evaluation_gate": {"suite": str(own.suite_id), "max_cost_increase": 0.25}},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["evaluation_gate"] == {
        "suite": str(own.suite_id),
        "min_pass_rate": 1.0,
        "no_regressions": True,
        "max_cost_increase": 0.25,
    }


# --- the API --------------------------------------------------------------------------------------


def test_the_api_shows_the_gate_and_refuses_approval_with_its_message(client_for, pm, reviewer):
    cr, _ = gated_cr(pm)
    url = f"/api/v1/change-requests/{cr.pk}/"
    (gate,) = client_for(pm).get(url).json()["gates"]
    assert (gate["name"], gate["state"], gate["pending"]) == ("evaluation", "pending", True)
    assert gate["message"].startswith("The evaluation gate has not passed yet")
    response = client_for(reviewer).post(f"{url}approve/", {"password": PASSWORD}, format="json")
    assert response.status_code == 409
    assert response.json()["code"] == "gate_pending"
    assert "still going" in response.json()["message"]
    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed)
    response = client_for(reviewer).post(f"{url}approve/", {"password": PASSWORD}, format="json")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["state"] == "approved"
    assert body["gates"][0]["state"] == "passed"
    assert body["approvals"][0]["evidence"]["evaluation"]["proposed_run"] == str(proposed.pk)


# --- the change-request page ----------------------------------------------------------------------


def test_the_page_shows_the_gate_and_disables_approve_with_the_reason(client, pm, reviewer):
    cr, _ = gated_cr(pm)
    client.force_login(reviewer)
    url = reverse("change_detail", args=[cr.pk])
    html = client.get(url).content.decode()
    assert 'data-gate-state="pending"' in html
    assert f'hx-get="{reverse("change_gates", args=[cr.pk])}"' in html  # polls while pending
    assert "data-approve disabled" in html
    assert "data-approve-blocked>The evaluation gate has not passed yet" in html
    # the polled fragment carries the approve button out of band
    fragment = client.get(reverse("change_gates", args=[cr.pk]), HTTP_HX_REQUEST="true")
    text = fragment.content.decode()
    assert "<html" not in text
    assert 'id="approve-action" class="approve-action" hx-swap-oob="true"' in text
    assert client.get(reverse("change_gates", args=[cr.pk])).status_code == 302  # no htmx
    client.force_login(member("reviewer"))  # another team's
    outside = client.get(reverse("change_gates", args=[cr.pk]), HTTP_HX_REQUEST="true")
    assert outside.status_code == 404
    client.force_login(reviewer)

    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed, {"beta": "fail"})
    html = client.get(url).content.decode()
    assert 'data-gate-state="failed"' in html
    assert 'data-case="beta" data-change="regressed"' in html
    assert "[builtin] something else" in html  # the proposed output beside the baseline's
    assert "1 case regressed: beta" in html
    assert "data-approve disabled" in html
    assert "hx-trigger" not in html.split('id="gates"')[1].split("</section>")[0]
    compare = f"{reverse('eval_compare')}?a={baseline.pk}&amp;b={proposed.pk}"
    assert compare in html
    assert reverse("eval_run_detail", args=[proposed.pk]) in html


def test_the_page_enables_approve_once_the_gate_passes(client, pm, reviewer):
    cr, _ = gated_cr(pm)
    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed)
    client.force_login(reviewer)
    html = client.get(reverse("change_detail", args=[cr.pk])).content.decode()
    assert 'data-gate-state="passed"' in html
    assert "data-approve>" in html  # enabled
    assert "data-approve-blocked" not in html
    response = client.post(
        reverse("change_approve", args=[cr.pk]), {"password": PASSWORD, "comment": "ok"}
    )
    assert response.status_code == 302
    html = client.get(reverse("change_detail", args=[cr.pk])).content.decode()
    assert 'data-evidence="evaluation"' in html
    assert "relied on" in html


def test_approving_on_the_page_while_pending_shows_the_refusal(client, pm, reviewer):
    cr, _ = gated_cr(pm)
    client.force_login(reviewer)
    response = client.post(reverse("change_approve", args=[cr.pk]), {"password": PASSWORD})
    assert response.status_code == 409
    assert "The evaluation gate has not passed yet" in response.content.decode()
    assert not Approval.objects.exists()


# Exact query counts of the change-request page (the product manager's view, whatever the number
# of cases): the same page without a gate, plus the gate's five reads: the proposed run, the
# baseline's run, the comparison's cases and results, the outputs of the rows shown. The
# polled fragment (the reviewer's) reads the request, its approvals, the gate, and what the
# approve button needs (the reviewer's standing: conflicts and roles).
DETAIL_QUERIES_WITHOUT_GATE = DETAIL_QUERIES  # as in tests/changes/test_views.py
GATE_QUERIES = 5
GATES_FRAGMENT_QUERIES = 16


@pytest.mark.parametrize("cases", [3, 30])
def test_the_page_query_count_with_the_gate(cases, client, pm, reviewer, django_assert_num_queries):
    cr, _ = gated_cr(pm, cases=[f"k{i}" for i in range(cases)])
    baseline, proposed = runs_of(cr)
    finish(baseline)
    finish(proposed, {"k1": "fail"})
    client.force_login(pm)
    url = reverse("change_detail", args=[cr.pk])
    client.get(url)
    with django_assert_num_queries(DETAIL_QUERIES_WITHOUT_GATE + GATE_QUERIES):
        response = client.get(url)
    assert response.content.decode().count('data-change="regressed"') == 1
    client.force_login(reviewer)
    fragment = reverse("change_gates", args=[cr.pk])
    client.get(fragment, HTTP_HX_REQUEST="true")
    with django_assert_num_queries(GATES_FRAGMENT_QUERIES):
        client.get(fragment, HTTP_HX_REQUEST="true")


def test_the_page_query_count_without_a_gate(client, pm, django_assert_num_queries):
    """The same set-up without a gate in the policy: the gate costs the page nothing."""
    baseline = released(pm)
    proposed = proposal(pm, baseline)
    cr = changes.change_request_create(
        actor=pm, product=baseline.product, title="t", rationale="r", proposed=proposed
    )
    cr = changes.change_request_submit(actor=pm, cr=cr)
    client.force_login(pm)
    url = reverse("change_detail", args=[cr.pk])
    client.get(url)
    with django_assert_num_queries(DETAIL_QUERIES_WITHOUT_GATE):
        response = client.get(url)
    assert 'id="evaluation-gate"' not in response.content.decode()


def test_the_gate_costs_no_query_without_a_gate(pm, django_assert_num_queries):
    baseline = released(pm)
    proposed = proposal(pm, baseline)
    cr = changes.change_request_create(
        actor=pm, product=baseline.product, title="t", rationale="r", proposed=proposed
    )
    cr = changes.change_request_submit(actor=pm, cr=cr)
    with django_assert_num_queries(0):
        assert gate_status(cr).passed


def test_an_auditor_sees_the_gate_but_cannot_sign(client, pm):
    cr, _ = gated_cr(pm)
    auditor = member("auditor", team_of(pm))
    client.force_login(auditor)
    html = client.get(reverse("change_detail", args=[cr.pk])).content.decode()
    assert 'data-gate-state="pending"' in html
    assert "data-approve" not in html


def test_cost_figures_are_decimal_strings(pm):
    cr, _ = gated_cr(pm, max_cost_increase=0.5)
    baseline, proposed = runs_of(cr)
    finish(baseline, cost="0.001")
    finish(proposed, cost="0.001")
    gate = gate_status(cr).evidence()["gate"]
    assert Decimal(gate["baseline_cost"]) == Decimal(gate["proposed_cost"]) == Decimal("0.003")

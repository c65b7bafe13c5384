import pytest
from django.core import mail

from apps.audit.models import AuditEvent
from apps.changes import services as changes
from apps.changes.models import ChangeRequest
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.releases.selectors import release_current
from tests.changes.helpers import PASSWORD, proposal, released, submitted_cr, team_reviewer
from tests.factories import member

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm():
    return member("product_manager")


@pytest.fixture
def admin(pm):
    return member("admin", pm.memberships.first().team)


def test_full_flow_releases_the_proposed_release(pm, django_capture_on_commit_callbacks):
    reviewer = team_reviewer(pm)
    with django_capture_on_commit_callbacks(execute=True):
        cr = submitted_cr(pm)
    assert cr.state == "submitted"
    assert cr.kind == "prompt_change"
    assert cr.proposed.status == "candidate"
    assert [m.to for m in mail.outbox] == [[reviewer.email]]
    with django_capture_on_commit_callbacks(execute=True):
        cr, approval = changes.change_request_approve(
            actor=reviewer, cr=cr, password=PASSWORD, comment="Looks good"
        )
    assert cr.state == "approved"
    assert (approval.role, approval.fingerprint) == ("reviewer", cr.fingerprint)
    assert mail.outbox[-1].to == [pm.email]
    cr = changes.change_request_implement(actor=pm, cr=cr)
    assert cr.state == "implemented"
    assert release_current(product=cr.product) == cr.proposed
    cr.baseline.refresh_from_db()
    assert cr.baseline.status == "deprecated"
    verbs = list(
        AuditEvent.objects.filter(object_id=str(cr.pk))
        .order_by("seq")
        .values_list("verb", flat=True)
    )
    assert verbs == [
        "change_request.created",
        "change_request.submitted",
        "change_request.in_review",
        "change_request.approved",
        "change_request.implemented",
    ]


def test_requester_cannot_approve_even_as_admin(pm, admin):
    cr = submitted_cr(admin, baseline=released(pm))
    with pytest.raises(Forbidden) as exc:
        changes.change_request_approve(actor=admin, cr=cr, password=PASSWORD)
    assert exc.value.code in {"separation_of_duties", "not_a_reviewer"}


def test_author_of_an_introduced_version_cannot_approve(pm):
    """GIVEN a reviewer who wrote the proposed prompt version WHEN they approve THEN 403."""
    reviewer = team_reviewer(pm)
    base = released(pm)
    # the reviewer is also a product manager of the team and authored the new prompt version
    from apps.accounts.services import membership_add

    membership_add(actor=None, user=reviewer, team=base.product.owner_team, role="product_manager")
    reviewer = type(reviewer).objects.get(pk=reviewer.pk)
    proposed = proposal(reviewer, base)
    cr = changes.change_request_create(
        actor=pm, product=base.product, title="t", rationale="r", proposed=proposed
    )
    cr = changes.change_request_submit(actor=pm, cr=cr)
    with pytest.raises(Forbidden) as exc:
        changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    assert exc.value.code == "separation_of_duties"


def test_signature_needs_the_password_and_failures_are_audited(pm):
    reviewer = team_reviewer(pm)
    cr = submitted_cr(pm)
    with pytest.raises(Forbidden) as exc:
        changes.change_request_approve(actor=reviewer, cr=cr, password="wrong")
    assert exc.value.code == "bad_signature"
    assert AuditEvent.objects.filter(verb="signature.failed", object_id=str(cr.pk)).exists()
    cr.refresh_from_db()
    assert cr.state == "submitted"


def test_reject_needs_a_comment_and_vetoes(pm):
    reviewer = team_reviewer(pm)
    cr = submitted_cr(pm)
    with pytest.raises(ApplicationError) as exc:
        changes.change_request_reject(actor=reviewer, cr=cr, password=PASSWORD, comment="")
    assert "comment" in exc.value.extra
    cr, _ = changes.change_request_reject(
        actor=reviewer, cr=cr, password=PASSWORD, comment="Too chatty"
    )
    assert cr.state == "rejected"
    with pytest.raises(Conflict):
        changes.change_request_implement(actor=pm, cr=cr)


def _policy(admin, product, **kwargs):
    kwargs.setdefault("required_roles", [{"role": "reviewer", "quorum": 2}])
    return changes.approval_policy_set(actor=admin, product=product, stage=product.stage, **kwargs)


def test_quorum_two_of_many(pm, admin):
    r1, r2, _ = team_reviewer(pm), team_reviewer(pm), team_reviewer(pm)
    base = released(pm)
    _policy(admin, base.product)
    cr = submitted_cr(pm, baseline=base)
    cr, _ = changes.change_request_approve(actor=r1, cr=cr, password=PASSWORD)
    assert cr.state == "in_review"
    with pytest.raises(Conflict):
        changes.change_request_approve(actor=r1, cr=cr, password=PASSWORD)
    with pytest.raises(Conflict):
        changes.change_request_implement(actor=pm, cr=cr)
    cr, _ = changes.change_request_approve(actor=r2, cr=cr, password=PASSWORD)
    assert cr.state == "approved"
    assert changes.quorum_status(cr).roles[0]["approvers"] == sorted([r1.username, r2.username])


def test_withdraw_edit_resubmit_voids_the_approval(pm, admin):
    r1, r2 = team_reviewer(pm), team_reviewer(pm)
    base = released(pm)
    _policy(admin, base.product)
    cr = submitted_cr(pm, baseline=base)
    cr, first = changes.change_request_approve(actor=r1, cr=cr, password=PASSWORD)
    cr = changes.change_request_withdraw(actor=pm, cr=cr)
    new_proposal = proposal(pm, base, version="1.2.0", text="A different prompt.")
    cr = changes.change_request_update(actor=pm, cr=cr, proposed=new_proposal)
    assert cr.state == "draft"
    cr = changes.change_request_submit(actor=pm, cr=cr)
    assert not first.is_valid_for(cr)
    assert changes.quorum_status(cr).roles[0]["have"] == 0
    cr, _ = changes.change_request_approve(actor=r2, cr=cr, password=PASSWORD)
    assert cr.state == "in_review"  # r1's old approval does not count
    cr, _ = changes.change_request_approve(actor=r1, cr=cr, password=PASSWORD)
    assert cr.state == "approved"


def test_governed_stages_need_a_required_approver(pm, admin):
    base = released(pm)
    product = base.product
    assert product.stage == "concept"
    changes.approval_policy_set(actor=admin, product=product, stage="concept", required_roles=[])
    for stage in ("validation", "production"):
        with pytest.raises(ApplicationError) as exc:
            changes.approval_policy_set(
                actor=admin, product=product, stage=stage, required_roles=[]
            )
        assert "required_roles" in exc.value.extra
    with pytest.raises(Forbidden):
        changes.approval_policy_set(actor=pm, product=product, stage="concept")


def test_policy_is_copied_at_submit(pm, admin):
    r1 = team_reviewer(pm)
    base = released(pm)
    _policy(admin, base.product, required_roles=[{"role": "reviewer", "quorum": 1}])
    cr = submitted_cr(pm, baseline=base)
    _policy(admin, base.product, required_roles=[{"role": "reviewer", "quorum": 3}])
    cr, _ = changes.change_request_approve(actor=r1, cr=cr, password=PASSWORD)
    assert cr.state == "approved"
    assert cr.policy_snapshot["required_roles"] == [{"role": "reviewer", "quorum": 1}]


def test_optional_and_comment_only_reviewers(pm, admin):
    r1 = team_reviewer(pm)
    optional = member("developer", pm.memberships.first().team)
    commenter = member("developer", pm.memberships.first().team)
    base = released(pm)
    _policy(
        admin,
        base.product,
        required_roles=[{"role": "reviewer", "quorum": 1}],
        optional_reviewers=[optional.username],
        comment_only=[commenter.username],
    )
    cr = submitted_cr(pm, baseline=base)
    with pytest.raises(Forbidden):
        changes.change_request_approve(actor=commenter, cr=cr, password=PASSWORD)
    cr, a = changes.change_request_reject(actor=optional, cr=cr, password=PASSWORD, comment="meh")
    assert (cr.state, a.required) == ("in_review", False)  # optional: recorded, no veto
    cr, _ = changes.change_request_approve(actor=r1, cr=cr, password=PASSWORD)
    assert cr.state == "approved"


def test_stale_change_must_be_rebased(pm):
    reviewer = team_reviewer(pm)
    base = released(pm)
    first = submitted_cr(pm, baseline=base, version="1.1.0", text="First idea.")
    second = submitted_cr(pm, baseline=base, version="1.2.0", text="Second idea.")
    first, _ = changes.change_request_approve(actor=reviewer, cr=first, password=PASSWORD)
    second, _ = changes.change_request_approve(actor=reviewer, cr=second, password=PASSWORD)
    changes.change_request_implement(actor=pm, cr=first)
    with pytest.raises(Conflict) as exc:
        changes.change_request_implement(actor=pm, cr=second)
    assert exc.value.code == "stale"
    assert "re-based" in exc.value.message
    second = changes.change_request_withdraw(actor=pm, cr=second)
    second = changes.change_request_update(
        actor=pm, cr=second, baseline=release_current(product=base.product)
    )
    second = changes.change_request_submit(actor=pm, cr=second)
    second, _ = changes.change_request_approve(actor=reviewer, cr=second, password=PASSWORD)
    changes.change_request_implement(actor=pm, cr=second)
    assert release_current(product=base.product) == second.proposed


def test_only_a_draft_is_editable_and_frozen_release_stays_frozen(pm):
    cr = submitted_cr(pm)
    with pytest.raises(Conflict):
        changes.change_request_update(actor=pm, cr=cr, title="new")
    from apps.releases.services import release_update

    with pytest.raises(Conflict):
        release_update(actor=pm, release=cr.proposed, notes="x")


def test_reviewers_outside_the_team_cannot_decide(pm):
    cr = submitted_cr(pm)
    outsider = member("reviewer")
    with pytest.raises(Forbidden):
        changes.change_request_approve(actor=outsider, cr=cr, password=PASSWORD)
    assert ChangeRequest.objects.get(pk=cr.pk).state == "submitted"


def test_a_reviewer_comment_starts_the_review_without_signing(pm):
    reviewer = team_reviewer(pm)
    cr = submitted_cr(pm)
    approval = changes.change_request_comment(actor=reviewer, cr=cr, comment="Reading it")
    cr.refresh_from_db()
    assert (cr.state, approval.decision, approval.required) == ("in_review", "comment", False)
    assert changes.quorum_status(cr).met is False
    with pytest.raises(ApplicationError):
        changes.change_request_comment(actor=reviewer, cr=cr, comment="  ")


def test_signing_locks_after_repeated_wrong_passwords(pm, settings):
    """GIVEN a stolen session guessing passwords WHEN the limit is reached THEN no more tries."""
    settings.AXES_FAILURE_LIMIT = 3
    reviewer = team_reviewer(pm)
    cr = submitted_cr(pm)
    for _ in range(3):
        with pytest.raises(Forbidden) as exc:
            changes.change_request_approve(actor=reviewer, cr=cr, password="guess")
        assert exc.value.code == "bad_signature"
    with pytest.raises(Forbidden) as exc:
        changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    assert exc.value.code == "signature_locked"


def test_requester_is_told_why_before_any_password_check(pm):
    cr = submitted_cr(pm)
    with pytest.raises(Forbidden) as exc:
        changes.change_request_approve(actor=pm, cr=cr, password="wrong")
    assert exc.value.code == "separation_of_duties"
    assert not AuditEvent.objects.filter(verb="signature.failed").exists()

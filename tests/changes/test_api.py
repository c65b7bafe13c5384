"""The change-control REST API: change requests, their review and signatures, and policies."""

import logging
from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.accounts.roles import ADMIN, AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.audit.models import AuditEvent
from apps.changes import services as changes
from apps.changes.models import ChangeRequest
from apps.releases.selectors import release_current

from ..api_suite import APIResourceSuite, assert_error, last_seq, verbs_since
from ..evaluations.factories import suite_with_cases
from ..factories import member, product, prompt_with_versions, release
from .helpers import PASSWORD, proposal, released, submitted_cr, team_reviewer

pytestmark = pytest.mark.django_db

URL = "/api/v1/change-requests/"
POLICIES = "/api/v1/approval-policies/"


def _team_of(user):
    return user.memberships.first().team


def _draft_cr(pm, baseline=None, **kwargs):
    baseline = baseline or released(pm)
    return changes.change_request_create(
        actor=pm,
        product=baseline.product,
        title="Friendlier prompt",
        rationale="Customers found it curt.",
        proposed=proposal(pm, baseline, **kwargs),
    )


def _post(client, cr, name, payload=None):
    return client.post(f"{URL}{cr.pk}/{name}/", payload or {}, format="json")


# --- The shared suite -------------------------------------------------------------------------


class TestChangeRequestAPI(APIResourceSuite):
    url = URL
    create_verbs = ("change_request.created",)
    update_verbs = ("change_request.updated",)
    actions = (
        ("submit", {}, ("release.frozen", "change_request.submitted")),
        ("withdraw", {"comment": "Not now."}, ("change_request.withdrawn",)),
    )
    list_queries = 7
    bad_filters = ("state=open", "product=x", "risk=extreme", "kind=whatever", "proposed=1")

    def make(self, actor):
        return _draft_cr(actor)

    def make_for_list(self, actor):
        """Drafts and approved requests in turn, each with its signatures: the list must use
        the prefetched approvals and policies."""
        n = getattr(self, "_n", 0)
        self._n = n + 1
        if n % 2 == 0:
            return _draft_cr(actor)
        reviewer = getattr(self, "_reviewer", None) or team_reviewer(actor)
        self._reviewer = reviewer
        cr = submitted_cr(actor)
        changes.change_request_comment(actor=reviewer, cr=cr, comment="Reading.")
        cr, _ = changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
        return cr

    def create_payload(self, actor):
        baseline = released(actor)
        return {
            "product": str(baseline.product_id),
            "title": "Friendlier prompt",
            "rationale": "Customers found it curt.",
            "proposed": str(proposal(actor, baseline).pk),
            "risk": "low",
            "impact": {"apis": ["support-assistant"]},
        }

    def update_payload(self, obj):
        return {"title": f"{obj.title} (edited)"}


@pytest.fixture
def pm():
    return member(PRODUCT_MANAGER)


@pytest.fixture
def reviewer(pm):
    return team_reviewer(pm)


# --- Representation ----------------------------------------------------------------------------


def test_create_defaults_the_baseline_and_returns_the_contract_fields(client_for, pm):
    baseline = released(pm)
    proposed = proposal(pm, baseline)
    response = client_for(pm).post(
        URL,
        {
            "product": str(baseline.product_id),
            "title": "Friendlier prompt",
            "rationale": "Customers found it curt.",
            "proposed": str(proposed.pk),
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert set(body) == {
        "id",
        "product",
        "title",
        "rationale",
        "kind",
        "risk",
        "impact",
        "baseline",
        "proposed",
        "state",
        "fingerprint",
        "policy_snapshot",
        "requested_by",
        "submitted_at",
        "decided_at",
        "implemented_at",
        "implemented_by",
        "approvals",
        "quorum",
        "created_at",
        "updated_at",
        "diff",
        "gates",
    }
    assert body["gates"] == []  # no evaluation gate in the policy: nothing holds it back
    assert body["baseline"] == str(baseline.pk)  # the released release, by default
    assert body["proposed"] == str(proposed.pk)
    assert (body["state"], body["kind"], body["risk"]) == ("draft", "prompt_change", "medium")
    assert body["requested_by"] == pm.username
    assert body["policy_snapshot"] is None
    assert body["approvals"] == []
    assert body["quorum"] == {
        "met": False,
        "roles": [{"role": "reviewer", "quorum": 1, "have": 0, "approvers": []}],
        "vetoed_by": [],
    }
    assert body["diff"]["prompt"]["changed"] is True
    assert {"op": "+", "text": "Proposed prompt."} in body["diff"]["prompt"]["lines"]
    assert body["diff"]["model"]["changed"] is False
    assert len(body["fingerprint"]) == 64


def test_list_has_no_diff_and_retrieve_does(client_for, pm):
    cr = _draft_cr(pm)
    client = client_for(pm)
    row = client.get(URL).json()["results"][0]
    assert "diff" not in row
    assert "quorum" in row and "approvals" in row
    assert "diff" in client.get(f"{URL}{cr.pk}/").json()


def test_initial_release_has_no_baseline(client_for, pm):
    prod = product(pm)
    first = release(pm, prod, "1.0.0")
    response = client_for(pm).post(
        URL,
        {"product": str(prod.pk), "title": "Launch", "rationale": "v1", "proposed": str(first.pk)},
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert (body["baseline"], body["kind"]) == (None, "initial_release")
    assert body["diff"]["prompt"]["from"] is None


def test_create_validation(client_for, pm):
    baseline = released(pm)
    proposed = proposal(pm, baseline)
    theirs = released(member(PRODUCT_MANAGER))
    other_product = released(pm)
    payload = {
        "product": str(baseline.product_id),
        "title": "T",
        "rationale": "R",
        "proposed": str(proposed.pk),
    }
    client = client_for(pm)
    seq = last_seq()
    for field, value, code in (
        ("proposed", str(theirs.pk), "does not exist"),
        ("baseline", str(theirs.pk), "does not exist"),
        ("product", str(theirs.product_id), "does not exist"),
        ("proposed", str(other_product.pk), "another product"),
        ("proposed", str(baseline.pk), "draft"),
        ("title", "", "blank"),
        ("rationale", "", "blank"),
        ("risk", "extreme", "valid choice"),
    ):
        body = assert_error(client.post(URL, {**payload, field: value}, format="json"), 400)
        assert field in body["fields"], (field, body)
        assert code in (body["message"] + str(body["fields"])).lower(), (field, body)
    assert verbs_since(seq) == Counter()


# --- The full flow through the API --------------------------------------------------------------


def test_full_flow_through_the_api(client_for, pm, reviewer):
    """GIVEN a product WHEN its first and second releases go through change requests, signed
    by a reviewer and implemented by the PM THEN each becomes the live release, and
    /products/{id}/live/?at= answers for any instant."""
    prod = product(pm)
    client, rclient = client_for(pm), client_for(reviewer)

    def new_release(version, text):
        pv = prompt_with_versions(pm, text, team=prod.owner_team)[1][0]
        mv = release(pm, prod, f"0.0.{version.split('.')[1]}-mv").model_version
        response = client.post(
            "/api/v1/releases/",
            {
                "product": str(prod.pk),
                "version": version,
                "prompt_version": str(pv.pk),
                "model_version": str(mv.pk),
            },
            format="json",
        )
        assert response.status_code == 201, response.data
        return response.json()

    def change(proposed_id):
        response = client.post(
            URL,
            {
                "product": str(prod.pk),
                "title": "Ship it",
                "rationale": "Better answers.",
                "proposed": proposed_id,
            },
            format="json",
        )
        assert response.status_code == 201, response.data
        cr = response.json()
        seq = last_seq()
        response = client.post(f"{URL}{cr['id']}/submit/")
        assert response.status_code == 200, response.data
        assert response.json()["state"] == "submitted"
        assert response.json()["policy_snapshot"]["required_roles"] == [
            {"role": "reviewer", "quorum": 1}
        ]
        assert verbs_since(seq) == Counter({"release.frozen": 1, "change_request.submitted": 1})
        queue = rclient.get(f"{URL}queue/").json()
        assert [row["id"] for row in queue["results"]] == [cr["id"]]

        seq = last_seq()
        response = rclient.post(
            f"{URL}{cr['id']}/approve/",
            {"comment": "Looks good.", "password": PASSWORD},
            format="json",
        )
        assert response.status_code == 200, response.data
        body = response.json()
        assert body["state"] == "approved"
        assert body["quorum"]["met"] is True
        [approval] = body["approvals"]
        assert approval["reviewer"] == reviewer.username
        assert (approval["decision"], approval["role"], approval["required"]) == (
            "approve",
            "reviewer",
            True,
        )
        assert approval["valid"] is True
        assert approval["fingerprint"] == body["fingerprint"]
        assert verbs_since(seq) == Counter(
            {
                "change_request.in_review": 1,
                "approval.signed": 1,
                "change_request.approved": 1,
            }
        )
        assert rclient.get(f"{URL}queue/").json()["count"] == 0

        seq = last_seq()
        response = client.post(f"{URL}{cr['id']}/implement/")
        assert response.status_code == 200, response.data
        body = response.json()
        assert body["state"] == "implemented"
        assert body["implemented_by"] == pm.username
        return body, verbs_since(seq)

    before = timezone.now()
    first = new_release("1.0.0", "First prompt.")
    body, verbs = change(first["id"])
    assert body["kind"] == "initial_release"
    assert verbs == Counter({"release.released": 1, "change_request.implemented": 1})
    between = timezone.now()

    second = new_release("1.1.0", "Second prompt.")
    body, verbs = change(second["id"])
    assert body["baseline"] == first["id"]
    assert verbs == Counter(
        {"release.deprecated": 1, "release.released": 1, "change_request.implemented": 1}
    )
    assert str(release_current(product=prod).pk) == second["id"]

    live = f"/api/v1/products/{prod.pk}/live/"
    assert_error(client.get(live, {"at": before.isoformat()}), 404)
    assert client.get(live, {"at": between.isoformat()}).json()["id"] == first["id"]
    assert client.get(live).json()["id"] == second["id"]
    statuses = {
        row["id"]: row["status"]
        for row in client.get(f"/api/v1/releases/?product={prod.pk}").json()["results"]
    }
    assert statuses[first["id"]] == "deprecated"
    assert statuses[second["id"]] == "released"


# --- Signatures ------------------------------------------------------------------------------


def test_requester_approval_is_separation_of_duties(client_for, pm):
    """GIVEN a requester, then one who is also a reviewer of the team WHEN approving their own
    change THEN 403 separation_of_duties, and nothing is recorded."""
    from apps.accounts.services import membership_add

    cr = submitted_cr(pm)
    client = client_for(pm)
    seq = last_seq()
    assert_error(_post(client, cr, "approve", {"password": PASSWORD}), 403, "separation_of_duties")
    assert verbs_since(seq) == Counter()

    membership_add(actor=None, user=pm, team=_team_of(pm), role=REVIEWER)
    pm = type(pm).objects.get(pk=pm.pk)
    cr = submitted_cr(pm)
    client = client_for(pm)
    seq = last_seq()
    body = assert_error(
        _post(client, cr, "approve", {"password": PASSWORD}), 403, "separation_of_duties"
    )
    assert "cannot approve" in body["message"]
    assert verbs_since(seq) == Counter()
    assert ChangeRequest.objects.get(pk=cr.pk).state == "submitted"


def test_wrong_password_is_403_audited_and_never_echoed(client_for, pm, reviewer, caplog):
    cr = submitted_cr(pm)
    secret = "Wr0ng-and-s3cret-\u00e9"
    client = client_for(reviewer)
    seq = last_seq()
    with caplog.at_level(logging.DEBUG):
        response = _post(client, cr, "approve", {"password": secret, "comment": "ok"})
        body = assert_error(response, 403, "bad_signature")
        reject = _post(client, cr, "reject", {"password": secret, "comment": "no"})
        assert_error(reject, 403, "bad_signature")
    assert "password" in body["fields"]
    assert verbs_since(seq) == Counter({"signature.failed": 2})
    assert ChangeRequest.objects.get(pk=cr.pk).state == "submitted"
    assert secret not in response.content.decode() + reject.content.decode()
    assert secret not in caplog.text
    events = AuditEvent.objects.filter(seq__gt=seq).values_list("before", "after")
    assert secret not in str(list(events))


def test_error_reports_hide_the_password(client_for, pm, reviewer, monkeypatch):
    """GIVEN a crash while a signature is checked WHEN Django builds its error report (the
    debug page, the admins' e-mail) THEN no frame shows the password."""
    from django.contrib.auth.hashers import MD5PasswordHasher
    from django.views.debug import ExceptionReporter

    def crash(self, password, encoded):
        raise RuntimeError("hasher down")

    monkeypatch.setattr(MD5PasswordHasher, "verify", crash)
    cr = submitted_cr(pm)
    client = client_for(reviewer)
    secret = "Sup3r-secret-signature"
    with pytest.raises(RuntimeError) as excinfo:
        _post(client, cr, "approve", {"password": secret})
    exc = excinfo.value
    report = ExceptionReporter(None, type(exc), exc, exc.__traceback__)
    frames = report.get_traceback_data()["frames"]
    assert any(name == "raw_password" for frame in frames for name, _ in frame["vars"])
    assert secret not in report.get_traceback_text()


def test_password_is_not_echoed_on_success_either(client_for, pm, reviewer):
    cr = submitted_cr(pm)
    response = _post(client_for(reviewer), cr, "approve", {"password": PASSWORD})
    assert response.status_code == 200, response.data
    assert PASSWORD not in response.content.decode()
    assert "password" not in response.json()


def test_missing_password_is_400(client_for, pm, reviewer):
    cr = submitted_cr(pm)
    client = client_for(reviewer)
    seq = last_seq()
    for payload in ({}, {"password": ""}, {"password": None}):
        body = assert_error(_post(client, cr, "approve", payload), 400, "invalid")
        assert "password" in body["fields"]
    assert verbs_since(seq) == Counter()


def test_reject_needs_a_comment_and_vetoes(client_for, pm, reviewer):
    cr = submitted_cr(pm)
    client = client_for(reviewer)
    seq = last_seq()
    for payload in ({"password": PASSWORD}, {"password": PASSWORD, "comment": "   "}):
        body = assert_error(_post(client, cr, "reject", payload), 400, "invalid")
        assert "comment" in body["fields"]
    assert verbs_since(seq) == Counter()

    response = _post(client, cr, "reject", {"password": PASSWORD, "comment": "Too chatty."})
    assert response.status_code == 200, response.data
    body = response.json()
    assert body["state"] == "rejected"
    assert body["quorum"]["vetoed_by"] == [reviewer.username]
    assert body["approvals"][0]["comment"] == "Too chatty."
    assert verbs_since(seq) == Counter(
        {"change_request.in_review": 1, "approval.signed": 1, "change_request.rejected": 1}
    )
    assert_error(_post(client_for(pm), cr, "implement"), 409, "invalid_transition")


@pytest.mark.parametrize("role", [AUDITOR, DEVELOPER, PRODUCT_MANAGER])
def test_only_reviewers_sign(client_for, pm, role):
    cr = submitted_cr(pm)
    client = client_for(member(role, _team_of(pm)))
    seq = last_seq()
    assert_error(_post(client, cr, "approve", {"password": PASSWORD}), 403)
    assert verbs_since(seq) == Counter()


def test_reviewer_of_another_team_gets_404(client_for, pm):
    cr = submitted_cr(pm)
    outsider = member(REVIEWER)
    for name in ("approve", "reject", "comment"):
        payload = {"password": PASSWORD, "comment": "x"}
        assert_error(_post(client_for(outsider), cr, name, payload), 404)


def test_double_signature_is_409(client_for, pm, reviewer):
    admin = member(ADMIN, _team_of(pm))
    base = released(pm)
    changes.approval_policy_set(
        actor=admin,
        product=base.product,
        stage=base.product.stage,
        required_roles=[{"role": "reviewer", "quorum": 2}],
    )
    cr = submitted_cr(pm, baseline=base)
    client = client_for(reviewer)
    assert _post(client, cr, "approve", {"password": PASSWORD}).status_code == 200
    assert_error(_post(client, cr, "approve", {"password": PASSWORD}), 409, "already_decided")


# --- State conflicts ---------------------------------------------------------------------------


def test_implement_of_a_stale_change_is_409(client_for, pm, reviewer):
    base = released(pm)
    first = submitted_cr(pm, baseline=base, version="1.1.0", text="First idea.")
    second = submitted_cr(pm, baseline=base, version="1.2.0", text="Second idea.")
    rclient, client = client_for(reviewer), client_for(pm)
    for cr in (first, second):
        assert _post(rclient, cr, "approve", {"password": PASSWORD}).status_code == 200
    assert _post(client, first, "implement").status_code == 200
    seq = last_seq()
    body = assert_error(_post(client, second, "implement"), 409, "stale")
    assert "re-based" in body["message"]
    assert verbs_since(seq) == Counter()
    assert str(release_current(product=base.product).pk) == str(first.proposed_id)


def test_submit_of_a_stale_draft_is_409(client_for, pm, reviewer):
    base = released(pm)
    stale = _draft_cr(pm, baseline=base, version="1.2.0", text="Later idea.")
    winner = submitted_cr(pm, baseline=base)
    changes.change_request_approve(actor=reviewer, cr=winner, password=PASSWORD)
    changes.change_request_implement(actor=pm, cr=winner)
    assert_error(_post(client_for(pm), stale, "submit"), 409, "stale")


def test_invalid_transitions_are_409(client_for, pm):
    cr = _draft_cr(pm)
    client = client_for(pm)
    assert_error(_post(client, cr, "implement"), 409, "invalid_transition")
    assert _post(client, cr, "submit").status_code == 200
    assert_error(_post(client, cr, "submit"), 409, "invalid_transition")
    body = assert_error(
        client.patch(f"{URL}{cr.pk}/", {"title": "New"}, format="json"), 409, "not_editable"
    )
    assert "withdraw" in body["message"]


def test_withdraw_edit_resubmit_voids_the_approval(client_for, pm):
    """GIVEN an approval by r1 WHEN the request is withdrawn, its proposed release swapped
    and resubmitted THEN r1's approval is shown void and the quorum is not met."""
    r1, r2 = team_reviewer(pm), team_reviewer(pm)
    admin = member(ADMIN, _team_of(pm))
    base = released(pm)
    response = client_for(admin).post(
        POLICIES,
        {
            "product": str(base.product_id),
            "stage": base.product.stage,
            "required_roles": [{"role": "reviewer", "quorum": 2}],
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    cr = submitted_cr(pm, baseline=base)
    client = client_for(pm)
    body = _post(client_for(r1), cr, "approve", {"password": PASSWORD}).json()
    assert body["state"] == "in_review"
    assert body["quorum"]["roles"][0]["have"] == 1
    signed = body["fingerprint"]

    seq = last_seq()
    assert _post(client, cr, "withdraw", {"comment": "Rework."}).json()["state"] == "withdrawn"
    new = proposal(pm, base, version="1.2.0", text="A different prompt.")
    seq = last_seq()
    response = client.patch(f"{URL}{cr.pk}/", {"proposed": str(new.pk)}, format="json")
    assert response.status_code == 200, response.data
    body = response.json()
    assert verbs_since(seq) == Counter({"change_request.reopened": 1, "change_request.updated": 1})
    assert body["state"] == "draft"
    assert body["fingerprint"] != signed
    [approval] = body["approvals"]
    assert (approval["reviewer"], approval["fingerprint"]) == (r1.username, signed)
    assert approval["valid"] is False
    assert body["quorum"]["met"] is False
    assert body["quorum"]["roles"][0]["have"] == 0

    body = _post(client, cr, "submit").json()
    assert body["state"] == "submitted"
    assert body["approvals"][0]["valid"] is False
    assert body["quorum"]["met"] is False
    body = _post(client_for(r2), cr, "approve", {"password": PASSWORD}).json()
    assert body["state"] == "in_review"  # r1's old approval does not count
    body = _post(client_for(r1), cr, "approve", {"password": PASSWORD}).json()
    assert body["state"] == "approved"
    assert [a["valid"] for a in body["approvals"]] == [False, True, True]


def test_patch_can_rebase_and_is_audited(client_for, pm):
    cr = _draft_cr(pm)
    client = client_for(pm)
    seq = last_seq()
    response = client.patch(
        f"{URL}{cr.pk}/", {"risk": "high", "impact": {"subscribers": 12}}, format="json"
    )
    assert response.status_code == 200, response.data
    assert (response.json()["risk"], response.json()["impact"]) == ("high", {"subscribers": 12})
    assert verbs_since(seq) == Counter({"change_request.updated": 1})
    body = assert_error(
        client.patch(f"{URL}{cr.pk}/", {"product": str(product(pm).pk)}, format="json"), 400
    )
    assert set(body["fields"]) == {"product"}


def test_reviewer_comment_moves_to_review(client_for, pm, reviewer):
    cr = submitted_cr(pm)
    client = client_for(reviewer)
    seq = last_seq()
    response = _post(client, cr, "comment", {"comment": "Reading it."})
    assert response.status_code == 200, response.data
    body = response.json()
    assert body["state"] == "in_review"
    assert body["approvals"][0]["decision"] == "comment"
    assert body["quorum"]["met"] is False
    assert verbs_since(seq) == Counter({"change_request.in_review": 1, "approval.commented": 1})
    assert_error(_post(client, cr, "comment", {"comment": " "}), 400, "invalid")
    assert_error(_post(client, cr, "comment", {}), 400, "invalid")


def test_auditor_of_another_team_cannot_comment(client_for, pm):
    cr = submitted_cr(pm)
    client = client_for(member(AUDITOR))
    assert client.get(f"{URL}{cr.pk}/").status_code == 200  # auditors read everything
    seq = last_seq()
    assert_error(_post(client, cr, "comment", {"comment": "Hm."}), 403, "forbidden")
    assert verbs_since(seq) == Counter()


def test_auditor_of_the_team_cannot_comment(client_for, pm):
    cr = submitted_cr(pm)
    client = client_for(member(AUDITOR, _team_of(pm)))
    assert_error(_post(client, cr, "comment", {"comment": "Hm."}), 403)


def test_reviewer_may_not_implement(client_for, pm, reviewer):
    cr = submitted_cr(pm)
    cr, _ = changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    assert_error(_post(client_for(reviewer), cr, "implement"), 403, "forbidden")
    assert ChangeRequest.objects.get(pk=cr.pk).state == "approved"


def test_filters(client_for, pm):
    draft = _draft_cr(pm)
    sub = submitted_cr(pm)
    client = client_for(pm)

    def ids(query):
        response = client.get(f"{URL}?{query}")
        assert response.status_code == 200, response.data
        return {row["id"] for row in response.json()["results"]}

    assert ids("state=draft") == {str(draft.pk)}
    assert ids("state=submitted") == {str(sub.pk)}
    assert ids(f"product={sub.product_id}") == {str(sub.pk)}
    assert ids(f"proposed={draft.proposed_id}") == {str(draft.pk)}
    assert ids(f"requested_by={pm.username}") == {str(draft.pk), str(sub.pk)}
    assert ids("kind=prompt_change&risk=medium") == {str(draft.pk), str(sub.pk)}
    assert ids("search=friendlier") == {str(draft.pk), str(sub.pk)}


# --- The reviewer's queue ----------------------------------------------------------------------


def test_queue_query_count_is_constant(client_for, pm, reviewer, django_assert_num_queries):
    """GIVEN 3 and then 30 requests waiting for a reviewer WHEN the queue is read THEN both
    cost the same queries; signed, own and other teams' requests are not in it."""
    client = client_for(reviewer)
    client.get(f"{URL}queue/")
    signed = submitted_cr(pm)
    changes.change_request_approve(actor=reviewer, cr=signed, password=PASSWORD)
    _draft_cr(pm)
    submitted_cr(member(PRODUCT_MANAGER))
    waiting = [submitted_cr(pm) for _ in range(3)]
    changes.change_request_comment(actor=reviewer, cr=waiting[0], comment="Reading.")
    with django_assert_num_queries(6):
        body = client.get(f"{URL}queue/").json()
    assert body["count"] == 3
    assert {row["id"] for row in body["results"]} == {str(cr.pk) for cr in waiting}
    assert all("diff" not in row for row in body["results"])
    waiting += [submitted_cr(pm) for _ in range(27)]
    with django_assert_num_queries(6):
        body = client.get(f"{URL}queue/").json()
    assert body["count"] == 30
    assert len(body["results"]) == 25
    assert client.get(f"{URL}queue/?page=2").json()["count"] == 30


def test_queue_is_empty_for_the_requester(client_for, pm):
    submitted_cr(pm)
    assert client_for(pm).get(f"{URL}queue/").json()["count"] == 0


# --- Approval policies -------------------------------------------------------------------------


def _admin_of(user):
    if user.has_role(ADMIN):
        return user
    return member(ADMIN, _team_of(user))


class TestApprovalPolicyAPI(APIResourceSuite):
    url = POLICIES
    create_verbs = ("approval_policy.set",)
    update_verbs = ("approval_policy.set",)
    wrong_roles = (PRODUCT_MANAGER, REVIEWER, AUDITOR)
    list_queries = 5
    bad_filters = ("stage=nowhere", "product=zzz")

    @pytest.fixture
    def owner(self, team):
        """Policies are set by the team's admins."""
        return member(ADMIN, team)

    def make(self, actor):
        return changes.approval_policy_set(
            actor=_admin_of(actor),
            product=product(actor),
            stage="production",
            required_roles=[{"role": "reviewer", "quorum": 2}],
        )

    def create_payload(self, actor):
        return {
            "product": str(product(actor).pk),
            "stage": "validation",
            "required_roles": [{"role": "reviewer", "quorum": 1}],
        }

    def update_payload(self, obj):
        return {"required_roles": [{"role": "reviewer", "quorum": 3}]}


@pytest.fixture
def admin(pm):
    return member(ADMIN, _team_of(pm))


def test_policy_shape_and_partial_update(client_for, admin, pm):
    prod = product(pm)
    optional = member(DEVELOPER, _team_of(pm))
    suite_id = str(suite_with_cases(pm).suite_id)  # the gate needs a suite of the team
    client = client_for(admin)
    response = client.post(
        POLICIES,
        {
            "product": str(prod.pk),
            "stage": "production",
            "required_roles": [{"role": "reviewer", "quorum": 2}, {"role": "admin"}],
            "optional_reviewers": [optional.username],
            "veto": False,
            "evaluation_gate": {"suite": suite_id, "min_pass_rate": 0.9},
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["required_roles"] == [
        {"role": "reviewer", "quorum": 2},
        {"role": "admin", "quorum": 1},
    ]
    assert body["optional_reviewers"] == [optional.username]
    assert body["comment_only"] == []
    assert body["veto"] is False
    assert body["evaluation_gate"] == {  # completed with the defaults
        "suite": suite_id,
        "min_pass_rate": 0.9,
        "no_regressions": True,
        "max_cost_increase": None,
    }
    seq = last_seq()
    response = client.patch(f"{POLICIES}{body['id']}/", {"veto": True}, format="json")
    assert response.status_code == 200, response.data
    patched = response.json()
    assert patched["veto"] is True
    assert patched["required_roles"] == body["required_roles"]  # kept
    assert patched["evaluation_gate"] == body["evaluation_gate"]
    assert verbs_since(seq) == Counter({"approval_policy.set": 1})
    body = assert_error(
        client.patch(f"{POLICIES}{body['id']}/", {"stage": "design"}, format="json"), 400
    )
    assert set(body["fields"]) == {"stage"}


def test_policy_post_replaces_the_stage_policy(client_for, admin, pm):
    prod = product(pm)
    client = client_for(admin)
    payload = {"product": str(prod.pk), "stage": "concept", "required_roles": []}
    first = client.post(POLICIES, payload, format="json")
    assert first.status_code == 201, first.data
    seq = last_seq()
    again = client.post(
        POLICIES, {**payload, "required_roles": [{"role": "reviewer"}]}, format="json"
    )
    assert again.status_code == 200, again.data
    assert again.json()["id"] == first.json()["id"]
    assert verbs_since(seq) == Counter({"approval_policy.set": 1})


@pytest.mark.parametrize("stage", ["validation", "production"])
def test_governed_stage_needs_a_required_approver(client_for, admin, pm, stage):
    prod = product(pm)
    client = client_for(admin)
    seq = last_seq()
    for roles in ([], None):
        payload = {"product": str(prod.pk), "stage": stage}
        if roles is not None:
            payload["required_roles"] = roles
        body = assert_error(client.post(POLICIES, payload, format="json"), 400, "invalid")
        assert "required_roles" in body["fields"]
    assert verbs_since(seq) == Counter()


def test_policy_validation(client_for, admin, pm):
    prod = product(pm)
    client = client_for(admin)
    base = {"product": str(prod.pk), "stage": "concept"}
    for extra, field in (
        ({"required_roles": [{"role": "ceo"}]}, "required_roles"),
        ({"required_roles": [{"role": "reviewer", "quorum": 0}]}, "required_roles"),
        ({"required_roles": [{"role": "reviewer"}, {"role": "reviewer"}]}, "required_roles[1]"),
        ({"optional_reviewers": ["nobody-at-all"]}, "optional_reviewers"),
        ({"evaluation_gate": {"suite": "x"}}, "evaluation_gate"),
        ({"evaluation_gate": {"suite": str(prod.pk), "min_pass_rate": 2}}, "evaluation_gate"),
        ({"stage": "someday"}, "stage"),
    ):
        body = assert_error(client.post(POLICIES, {**base, **extra}, format="json"), 400)
        assert any(key.startswith(field) for key in body["fields"]), (extra, body)


def test_policy_for_an_out_of_scope_product_is_400(client_for, admin):
    theirs = product(member(PRODUCT_MANAGER))
    body = assert_error(
        client_for(admin).post(
            POLICIES, {"product": str(theirs.pk), "stage": "concept"}, format="json"
        ),
        400,
    )
    assert "does not exist" in str(body["fields"]["product"])


def test_policy_in_force_is_previewed_on_drafts(client_for, admin, pm):
    base = released(pm)
    changes.approval_policy_set(
        actor=admin,
        product=base.product,
        stage=base.product.stage,
        required_roles=[{"role": "reviewer", "quorum": 2}, {"role": "admin", "quorum": 1}],
    )
    cr = _draft_cr(pm, baseline=base)
    client = client_for(pm)
    row = client.get(f"{URL}?product={base.product_id}").json()["results"][0]
    detail = client.get(f"{URL}{cr.pk}/").json()
    for body in (row, detail):
        assert [(r["role"], r["quorum"]) for r in body["quorum"]["roles"]] == [
            ("reviewer", 2),
            ("admin", 1),
        ]
        assert body["policy_snapshot"] is None


def test_dates_are_set_along_the_way(client_for, pm, reviewer):
    cr = submitted_cr(pm)
    body = client_for(pm).get(f"{URL}{cr.pk}/").json()
    assert body["submitted_at"] is not None and body["decided_at"] is None
    _post(client_for(reviewer), cr, "approve", {"password": PASSWORD})
    body = _post(client_for(pm), cr, "implement").json()
    decided = timezone.datetime.fromisoformat(body["decided_at"])
    assert timezone.now() - decided < timedelta(minutes=1)
    assert body["implemented_at"] is not None

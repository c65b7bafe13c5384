"""The change-request pages: list, queue, form, the request with its diff, quorum, signatures and
history, the actions, the navigation count, scope and query counts."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.accounts.services import membership_add
from apps.audit.models import AuditEvent
from apps.changes import services as changes
from apps.changes.models import Approval, ChangeRequest
from apps.releases.models import Release
from tests.changes.helpers import PASSWORD, proposal, released, submitted_cr, team_reviewer
from tests.factories import member, prompt_with_versions, release
from tests.portal.test_views import CHANGE_PANEL_QUERIES

pytestmark = pytest.mark.django_db

# Exact query counts, whatever the number of rows (asserted with 3 and 30).
CHANGE_LIST_QUERIES = 9
QUEUE_QUERIES = 7
DASHBOARD_QUERIES = 13
DETAIL_QUERIES = 19 + CHANGE_PANEL_QUERIES  # the portal's impact section


@pytest.fixture
def pm():
    return member("product_manager")


@pytest.fixture
def reviewer(pm):
    return team_reviewer(pm)


@pytest.fixture
def cr(pm):
    return submitted_cr(pm)


def _text(response) -> str:
    return response.content.decode()


def _rows(response) -> int:
    return _text(response).count("<tr>") - 1  # minus the header row


def _login(client, user):
    client.force_login(user)
    return client


def _draft_cr(pm, baseline=None, **kwargs):
    baseline = baseline or released(pm)
    return changes.change_request_create(
        actor=pm,
        product=baseline.product,
        title=kwargs.pop("title", "Draft change"),
        rationale="Because.",
        proposed=proposal(pm, baseline, **kwargs),
    )


# --- access ----------------------------------------------------------------------------------


def test_pages_require_login(client, cr):
    for url in (
        reverse("change_list"),
        reverse("change_queue"),
        reverse("change_create"),
        reverse("change_detail", args=[cr.pk]),
        reverse("change_edit", args=[cr.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")
    response = client.post(reverse("change_approve", args=[cr.pk]), {"password": PASSWORD})
    assert response.status_code == 302
    assert not Approval.objects.exists()


def test_out_of_scope_is_404(client, cr):
    """GIVEN a change request of another team
    WHEN an outsider (a reviewer of their own team) opens it or posts to it
    THEN every page and action is a 404 and nothing is written."""
    outsider = member("reviewer")
    _login(client, outsider)
    assert client.get(reverse("change_detail", args=[cr.pk])).status_code == 404
    assert client.get(reverse("change_edit", args=[cr.pk])).status_code == 404
    for action in ("submit", "withdraw", "implement", "comment", "approve", "reject"):
        response = client.post(
            reverse(f"change_{action}", args=[cr.pk]),
            {"password": PASSWORD, "comment": "x", "note-comment": "x"},
        )
        assert response.status_code == 404, action
    assert client.get(reverse("change_create"), {"product": cr.product_id}).status_code == 404
    assert client.get(reverse("change_create"), {"product": "not-a-uuid"}).status_code == 404
    assert "Friendlier prompt" not in _text(client.get(reverse("change_list")))
    assert not Approval.objects.exists()


# --- list ------------------------------------------------------------------------------------


def test_list_shows_scoped_requests_with_filters(client, pm, cr):
    other_pm = member("product_manager")
    submitted_cr(other_pm)  # another team's: never listed
    draft = _draft_cr(pm, title="Still a draft")
    _login(client, pm)
    html = _text(client.get(reverse("change_list")))
    assert "Friendlier prompt" in html
    assert "Still a draft" in html
    assert html.count('href="/changes/') >= 2
    assert 'class="badge state-submitted"' in html
    # filter by state (an htmx request gets the table only)
    response = client.get(reverse("change_list"), {"state": "draft"}, HTTP_HX_REQUEST="true")
    assert "<html" not in _text(response)
    assert "Still a draft" in _text(response)
    assert "Friendlier prompt" not in _text(response)
    open_ = _text(client.get(reverse("change_list"), {"state": "open"}))
    assert "Friendlier prompt" in open_
    assert "Still a draft" not in open_
    # filter by product and by text
    by_product = _text(client.get(reverse("change_list"), {"product": draft.product_id}))
    assert "Still a draft" in by_product
    assert "Friendlier prompt" not in by_product
    assert _text(client.get(reverse("change_list"), {"q": "nothing-like-it"})).count(
        "No matching change requests"
    )
    assert client.get(reverse("change_list"), {"state": "bogus"}).status_code == 200
    assert "New change request" in html
    client.force_login(team_reviewer(pm))
    assert "New change request" not in _text(client.get(reverse("change_list")))


@pytest.mark.parametrize("rows", [3, 30])
def test_list_query_count_is_constant(rows, client, pm, reviewer, django_assert_num_queries):
    baseline = released(pm)
    for i in range(rows):
        cr = changes.change_request_create(
            actor=pm,
            product=baseline.product,
            title=f"Change {i}",
            rationale="Why not.",
            proposed=proposal(pm, baseline, version=f"1.{i + 1}.0", text=f"Text {i}."),
        )
        if i % 2 == 0:
            cr = changes.change_request_submit(actor=pm, cr=cr)
            changes.change_request_comment(actor=reviewer, cr=cr, comment="Looking.")
    _login(client, pm)
    url = reverse("change_list")
    client.get(url)  # warm process-wide caches (content types)
    with django_assert_num_queries(CHANGE_LIST_QUERIES):
        response = client.get(url)
    assert _rows(response) == min(rows, 25)


# --- queue and the navigation count ---------------------------------------------------------


def test_queue_lists_what_waits_and_the_nav_counts_it(client, pm, reviewer, cr):
    _login(client, reviewer)
    response = client.get(reverse("change_queue"))
    html = _text(response)
    assert "Friendlier prompt" in html
    assert reverse("change_detail", args=[cr.pk]) in html
    assert re.search(r"data-nav-queue>1<", html)
    assert re.search(r'data-count="queue">1<', html)
    assert "0/1" in html  # approvals so far against the quorum
    # the requester: nothing waits, no count in the navigation
    client.force_login(pm)
    html = _text(client.get(reverse("change_queue")))
    assert "Nothing waits for you" in html
    assert "data-nav-queue" not in html
    assert 'href="/changes/"' in html  # the nav link is always there


def test_queue_empties_once_signed(client, reviewer, cr):
    changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    _login(client, reviewer)
    html = _text(client.get(reverse("dashboard")))
    assert "data-nav-queue" not in html
    assert "Nothing waits for you" in _text(client.get(reverse("change_queue")))


@pytest.mark.parametrize("rows", [3, 30])
def test_queue_query_count_is_constant(rows, client, pm, reviewer, django_assert_num_queries):
    baseline = released(pm)
    for i in range(rows):
        cr = changes.change_request_create(
            actor=pm,
            product=baseline.product,
            title=f"Change {i}",
            rationale="Why not.",
            proposed=proposal(pm, baseline, version=f"1.{i + 1}.0", text=f"Text {i}."),
        )
        changes.change_request_submit(actor=pm, cr=cr)
    _login(client, reviewer)
    url = reverse("change_queue")
    client.get(url)
    with django_assert_num_queries(QUEUE_QUERIES):
        response = client.get(url)
    assert _rows(response) == min(rows, 25)
    assert re.search(rf"data-nav-queue>{rows}<", _text(response))


@pytest.mark.parametrize("rows", [3, 30])
def test_nav_count_costs_a_fixed_number_of_queries(
    rows, client, pm, reviewer, django_assert_num_queries
):
    """GIVEN 3 or 30 change requests waiting for the reviewer
    WHEN the reviewer opens any page with the navigation
    THEN the count is right and the page costs the same queries either way."""
    baseline = released(pm)
    for i in range(rows):
        cr = changes.change_request_create(
            actor=pm,
            product=baseline.product,
            title=f"Change {i}",
            rationale="Why not.",
            proposed=proposal(pm, baseline, version=f"1.{i + 1}.0", text=f"Text {i}."),
        )
        changes.change_request_submit(actor=pm, cr=cr)
    _login(client, reviewer)
    url = reverse("dashboard")
    client.get(url)
    with django_assert_num_queries(DASHBOARD_QUERIES):
        response = client.get(url)
    assert re.search(rf"data-nav-queue>{rows}<", _text(response))


def test_nav_count_is_not_computed_for_htmx_fragments_or_anonymous(client, pm, reviewer, cr):
    _login(client, reviewer)
    url = reverse("change_list")
    client.get(url)
    with CaptureQueriesContext(connection) as page:
        client.get(url)
    with CaptureQueriesContext(connection) as fragment:
        response = client.get(url, HTTP_HX_REQUEST="true")
    assert "Friendlier prompt" in _text(response)

    def queue_lookups(ctx) -> int:  # the queue reads the candidates oldest submission first
        return sum('ORDER BY "changes_changerequest"."submitted_at"' in q["sql"] for q in ctx)

    assert queue_lookups(page) == 1
    assert queue_lookups(fragment) == 0
    assert len(fragment) < len(page)
    client.logout()
    html = _text(client.get(reverse("login")))
    assert "data-nav-queue" not in html


# --- the form --------------------------------------------------------------------------------


def test_new_without_product_offers_the_products_one_may_change(client, pm):
    mine = released(pm).product
    other = member("product_manager")
    theirs = released(other).product
    _login(client, pm)
    html = _text(client.get(reverse("change_create")))
    assert f"?product={mine.pk}" in html
    assert str(theirs.pk) not in html


def test_create_form_offers_drafts_and_preselects_the_baseline(client, pm):
    baseline = released(pm)
    draft = proposal(pm, baseline)
    _login(client, pm)
    url = reverse("change_create") + f"?product={baseline.product_id}&proposed={draft.pk}"
    html = _text(client.get(url))
    assert re.search(rf'<option value="{baseline.pk}" selected>', html)
    assert re.search(rf'<option value="{draft.pk}" selected>', html)
    response = client.post(
        url,
        {
            "title": "Swap the prompt",
            "rationale": "Warmer tone.",
            "risk": "low",
            "proposed": draft.pk,
            "baseline": baseline.pk,
        },
    )
    cr = ChangeRequest.objects.get(title="Swap the prompt")
    assert response.status_code == 302
    assert response["Location"] == reverse("change_detail", args=[cr.pk])
    assert (cr.state, cr.risk, cr.kind, cr.requested_by) == ("draft", "low", "prompt_change", pm)
    assert cr.baseline == baseline
    assert AuditEvent.objects.filter(verb="change_request.created", object_id=str(cr.pk)).exists()


def test_create_form_without_a_draft_points_to_the_release_form(client, pm):
    baseline = released(pm)
    _login(client, pm)
    html = _text(client.get(reverse("change_create"), {"product": baseline.product_id}))
    assert "No draft release to propose" in html
    assert reverse("release_create", args=[baseline.product_id]) in html


def test_create_form_validates(client, pm):
    baseline = released(pm)
    proposal(pm, baseline)
    _login(client, pm)
    url = reverse("change_create") + f"?product={baseline.product_id}"
    response = client.post(url, {"title": "", "rationale": "", "risk": "low"})
    assert response.status_code == 200
    assert "This field is required." in _text(response)
    assert not ChangeRequest.objects.exists()


def test_reviewer_cannot_file_a_change(client, pm, reviewer):
    baseline = released(pm)
    _login(client, reviewer)
    response = client.get(reverse("change_create"), {"product": baseline.product_id})
    assert response.status_code == 403


def test_edit_shows_a_service_refusal_on_the_form(client, pm, reviewer):
    """GIVEN a draft request proposing R, and R released meanwhile through another request
    WHEN the PM saves the draft still proposing R
    THEN the service's refusal is shown on the field, with a 200, and nothing changes."""
    baseline = released(pm)
    shared = proposal(pm, baseline)
    draft = changes.change_request_create(
        actor=pm, product=baseline.product, title="Old", rationale="Old.", proposed=shared
    )
    other = changes.change_request_create(
        actor=pm, product=baseline.product, title="Other", rationale="Other.", proposed=shared
    )
    other = changes.change_request_submit(actor=pm, cr=other)
    other, _ = changes.change_request_approve(actor=reviewer, cr=other, password=PASSWORD)
    changes.change_request_implement(actor=pm, cr=other)
    _login(client, pm)
    response = client.post(
        reverse("change_edit", args=[draft.pk]),
        {
            "title": "New title",
            "rationale": "Old.",
            "risk": "medium",
            "proposed": shared.pk,
            "baseline": baseline.pk,
        },
    )
    html = _text(response)
    assert response.status_code == 200
    assert "is released; propose a draft release" in html
    assert "Not a draft." in html
    draft.refresh_from_db()
    assert draft.title == "Old"


def test_edit_of_a_request_in_review_redirects_with_a_message(client, pm, cr):
    _login(client, pm)
    response = client.get(reverse("change_edit", args=[cr.pk]), follow=True)
    assert response.redirect_chain[-1][0] == reverse("change_detail", args=[cr.pk])
    assert "withdraw it to edit it" in _text(response)


# --- the request page ------------------------------------------------------------------------


def test_detail_shows_diff_quorum_timeline_and_history(client, pm, reviewer, cr):
    changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD, comment="Warmer.")
    _login(client, pm)
    response = client.get(reverse("change_detail", args=[cr.pk]))
    html = _text(response)
    assert response.status_code == 200
    # diff: the prompt line removed and added, like the prompt diff page
    assert re.search(
        r'<tr class="diff-del"><td class="marker">-</td><td class="text">'
        r"Baseline prompt\.</td></tr>",
        html,
    )
    assert re.search(
        r'<tr class="diff-add"><td class="marker">\+</td><td class="text">'
        r"Proposed prompt\.</td></tr>",
        html,
    )
    assert 'data-section="model"' in html
    assert 'data-section="datasets"' in html
    assert 'data-section="settings"' in html
    # quorum and the signature in the timeline
    assert '<span class="badge quorum-badge met">Quorum met</span>' in html
    assert re.search(r'<span class="quorum-count met">1/1</span>', html)
    assert f"Approved by {reviewer.username}" in html
    assert 'data-decision="approve" data-valid="true"' in html
    assert "Warmer." in html
    assert "signed as reviewer" in html
    # audit trail with actors, and field history
    for verb, actor in (
        ("change_request.created", pm),
        ("change_request.submitted", pm),
        ("change_request.in_review", reviewer),
        ("approval.signed", reviewer),
        ("change_request.approved", reviewer),
    ):
        assert re.search(
            rf'data-verb="{re.escape(verb)}">\s*<span><strong>{actor.username}</strong>', html
        ), verb
    assert 'state: <span class="old">draft</span> → <span class="new">submitted</span>' in html
    # the requester sees no signature buttons, and why
    assert ">Approve</button>" not in html
    assert ">Reject</button>" not in html


def test_the_requester_sees_no_approve_button(client, pm, reviewer, cr):
    _login(client, pm)
    html = _text(client.get(reverse("change_detail", args=[cr.pk])))
    assert ">Approve</button>" not in html
    assert ">Reject</button>" not in html
    assert "You requested this change or authored part of it" in html
    client.force_login(reviewer)
    html = _text(client.get(reverse("change_detail", args=[cr.pk])))
    assert ">Approve</button>" in html
    assert ">Reject</button>" in html
    assert 'name="password"' in html


def test_an_author_of_the_proposed_content_sees_no_approve_button(client, pm):
    """GIVEN a reviewer who is also a product manager and wrote the proposed prompt version
    WHEN they open the request filed by somebody else
    THEN they get no signature form: they are conflicted."""
    team = pm.memberships.first().team
    author = team_reviewer(pm)
    membership_add(actor=None, user=author, team=team, role="product_manager")
    baseline = released(pm)
    _, (pv,) = prompt_with_versions(author, "Author's prompt.", team=team)
    proposed = release(
        pm, baseline.product, "1.1.0", prompt_version=pv, model_version=baseline.model_version
    )
    cr = changes.change_request_create(
        actor=pm, product=baseline.product, title="T", rationale="R.", proposed=proposed
    )
    changes.change_request_submit(actor=pm, cr=cr)
    _login(client, author)
    html = _text(client.get(reverse("change_detail", args=[cr.pk])))
    assert ">Approve</button>" not in html
    assert "You requested this change or authored part of it" in html


def test_requester_posting_an_approval_is_refused(client, pm, cr):
    _login(client, pm)
    response = client.post(
        reverse("change_approve", args=[cr.pk]), {"password": PASSWORD, "comment": "Me!"}
    )
    assert response.status_code == 403
    assert "cannot approve or reject it" in _text(response)
    assert not Approval.objects.exists()


def test_approve_signs_and_moves_the_state(client, pm, reviewer, cr):
    _login(client, reviewer)
    response = client.post(
        reverse("change_approve", args=[cr.pk]), {"password": PASSWORD, "comment": "LGTM"}
    )
    assert response.status_code == 302
    cr.refresh_from_db()
    assert cr.state == "approved"
    approval = Approval.objects.get()
    assert (approval.reviewer, approval.decision, approval.comment) == (reviewer, "approve", "LGTM")
    assert approval.fingerprint == cr.fingerprint
    html = _text(client.get(reverse("change_detail", args=[cr.pk])))
    assert '<span class="badge quorum-badge met">Quorum met</span>' in html
    assert ">Approve</button>" not in html  # approved: no longer in review


def test_a_wrong_password_is_a_form_error(client, reviewer, cr):
    _login(client, reviewer)
    response = client.post(
        reverse("change_approve", args=[cr.pk]), {"password": "wrong", "comment": "Typed."}
    )
    html = _text(response)
    assert response.status_code == 200
    assert "Incorrect password." in html
    assert "Typed." in html  # the comment is kept
    assert 'value="wrong"' not in html  # the password is not
    assert not Approval.objects.exists()
    assert AuditEvent.objects.filter(verb="signature.failed").count() == 1
    response = client.post(reverse("change_approve", args=[cr.pk]), {"comment": "x"})
    assert response.status_code == 200
    assert "This field is required." in _text(response)


def test_reject_needs_a_comment_then_rejects(client, reviewer, cr):
    _login(client, reviewer)
    url = reverse("change_reject", args=[cr.pk])
    response = client.post(url, {"password": PASSWORD, "comment": ""})
    assert response.status_code == 200
    assert "Required when rejecting." in _text(response)
    cr.refresh_from_db()
    assert cr.state == "submitted"
    response = client.post(url, {"password": PASSWORD, "comment": "Too casual."}, follow=True)
    cr.refresh_from_db()
    assert cr.state == "rejected"
    html = _text(response)
    assert "Rejected and signed as" in html
    assert "vetoed" in html
    assert 'data-decision="reject" data-valid="true"' in html


def test_signing_twice_is_a_conflict_shown_on_the_page(client, pm, reviewer):
    team = pm.memberships.first().team
    second = team_reviewer(pm)
    baseline = released(pm)
    changes.approval_policy_set(
        actor=member("admin", team),
        product=baseline.product,
        stage=baseline.product.stage,
        required_roles=[{"role": "reviewer", "quorum": 2}],
    )
    cr = submitted_cr(pm, baseline)
    changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    _login(client, reviewer)
    response = client.post(reverse("change_approve", args=[cr.pk]), {"password": PASSWORD})
    assert response.status_code == 409
    assert "You already signed this version of the change." in _text(response)
    assert ">Approve</button>" not in _text(response)
    assert "You signed this version of the change: approve." in _text(response)
    client.force_login(second)
    html = _text(client.get(reverse("change_detail", args=[cr.pk])))
    assert ">Approve</button>" in html
    assert re.search(r'<span class="quorum-count">1/2</span>', html)
    assert '<span class="badge quorum-badge">Quorum not met</span>' in html


def test_comment(client, reviewer, cr):
    _login(client, reviewer)
    url = reverse("change_comment", args=[cr.pk])
    response = client.post(url, {"note-comment": ""})
    assert response.status_code == 200
    assert "This field is required." in _text(response)
    response = client.post(url, {"note-comment": "Reading the diff."}, follow=True)
    html = _text(response)
    assert "Comment added." in html
    assert 'data-decision="comment"' in html
    assert "Reading the diff." in html
    cr.refresh_from_db()
    assert cr.state == "in_review"  # a reviewer's first comment starts the review


def test_an_auditor_reads_but_gets_no_forms(client, pm, cr):
    auditor = member("auditor", pm.memberships.first().team)
    _login(client, auditor)
    response = client.get(reverse("change_detail", args=[cr.pk]))
    html = _text(response)
    assert response.status_code == 200
    assert "Friendlier prompt" in html
    for absent in ("Add comment", ">Approve</button>", "Withdraw", "Implement", "Edit</a>"):
        assert absent not in html, absent
    assert "You are not a reviewer of this change request." in html


def test_submit_withdraw_and_implement_buttons(client, pm, reviewer):
    draft = _draft_cr(pm)
    _login(client, pm)
    html = _text(client.get(reverse("change_detail", args=[draft.pk])))
    assert "Submit for review" in html
    assert reverse("change_edit", args=[draft.pk]) in html
    response = client.post(reverse("change_submit", args=[draft.pk]), follow=True)
    assert "Submitted for review" in _text(response)
    draft.refresh_from_db()
    assert draft.state == "submitted"
    assert Release.objects.get(pk=draft.proposed_id).status == "candidate"
    # submitting again is refused as a message, not an error page
    response = client.post(reverse("change_submit", args=[draft.pk]), follow=True)
    assert response.status_code == 200
    assert "not a draft" in _text(response)
    changes.change_request_approve(actor=reviewer, cr=draft, password=PASSWORD)
    html = _text(client.get(reverse("change_detail", args=[draft.pk])))
    assert ">Implement</button>" in html
    response = client.post(reverse("change_implement", args=[draft.pk]), follow=True)
    assert "Implemented" in _text(response)
    draft.refresh_from_db()
    assert draft.state == "implemented"
    assert Release.objects.get(pk=draft.proposed_id).status == "released"
    # the product page shows the new released release and the request
    html = _text(client.get(reverse("product_detail", args=[draft.product_id])))
    assert 'data-released="1.1.0"' in html
    assert reverse("change_detail", args=[draft.pk]) in html


def test_a_reviewer_cannot_implement(client, pm, reviewer, cr):
    cr, _ = changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    _login(client, reviewer)
    assert ">Implement</button>" not in _text(client.get(reverse("change_detail", args=[cr.pk])))
    assert client.post(reverse("change_implement", args=[cr.pk])).status_code == 403
    cr.refresh_from_db()
    assert cr.state == "approved"


def test_a_stale_baseline_is_refused_with_a_message(client, pm, reviewer):
    baseline = released(pm)
    stale = _draft_cr(pm, baseline, version="1.2.0", title="Stale one")
    first = submitted_cr(pm, baseline)
    first, _ = changes.change_request_approve(actor=reviewer, cr=first, password=PASSWORD)
    changes.change_request_implement(actor=pm, cr=first)
    _login(client, pm)
    response = client.post(reverse("change_submit", args=[stale.pk]), follow=True)
    assert response.status_code == 200
    assert "re-base the change request" in _text(response)
    stale.refresh_from_db()
    assert stale.state == "draft"


def test_withdraw_edit_resubmit_voids_the_earlier_approval(client, pm, reviewer, cr):
    """GIVEN an approved change request
    WHEN the PM withdraws it, edits it to propose another draft and submits it again
    THEN the page shows the earlier approval as void and the quorum as not met."""
    changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD, comment="OK")
    other = proposal(pm, cr.baseline, version="1.2.0", text="Another prompt.")
    _login(client, pm)
    response = client.post(
        reverse("change_withdraw", args=[cr.pk]), {"withdraw-comment": "One more fix."}, follow=True
    )
    assert "Withdrawn." in _text(response)
    event = AuditEvent.objects.get(verb="change_request.withdrawn", object_id=str(cr.pk))
    assert (event.actor, event.after["comment"]) == (pm, "One more fix.")
    assert "One more fix." in _text(response)  # shown in the trail
    response = client.post(
        reverse("change_edit", args=[cr.pk]),
        {
            "title": cr.title,
            "rationale": cr.rationale,
            "risk": cr.risk,
            "proposed": other.pk,
            "baseline": cr.baseline_id,
        },
    )
    assert response.status_code == 302
    client.post(reverse("change_submit", args=[cr.pk]))
    cr.refresh_from_db()
    assert (cr.state, cr.proposed_id) == ("submitted", other.pk)
    html = _text(client.get(reverse("change_detail", args=[cr.pk])))
    assert 'data-decision="approve" data-valid="false"' in html
    assert '<span class="badge badge-void"' in html
    assert "1 earlier signature no longer counts" in html
    assert '<span class="badge quorum-badge">Quorum not met</span>' in html
    assert re.search(r'<span class="quorum-count">0/1</span>', html)
    assert "Another prompt." in html
    # the reviewer may sign the new content
    client.force_login(reviewer)
    assert ">Approve</button>" in _text(client.get(reverse("change_detail", args=[cr.pk])))


def test_detail_of_an_initial_release(client, pm, reviewer):
    """A first release has no baseline: everything in it is added."""
    r = release(pm, prompt_text="First words.")
    cr = changes.change_request_create(
        actor=pm, product=r.product, title="Launch", rationale="Go.", proposed=r
    )
    _login(client, reviewer)
    html = _text(client.get(reverse("change_detail", args=[cr.pk])))
    assert "none — the product's first release" in html
    assert re.search(r'<td class="marker">\+</td><td class="text">First words\.</td>', html)
    assert "initial release" in html


@pytest.mark.parametrize("rows", [3, 30])
def test_detail_query_count_is_constant(rows, client, pm, reviewer, cr, django_assert_num_queries):
    """The timeline, quorum, trail and history cost the same however long they are."""
    for i in range(rows):
        changes.change_request_comment(actor=reviewer, cr=cr, comment=f"Note {i}.")
    changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    _login(client, pm)
    url = reverse("change_detail", args=[cr.pk])
    client.get(url)
    with django_assert_num_queries(DETAIL_QUERIES):
        response = client.get(url)
    assert _text(response).count('data-decision="comment"') == rows

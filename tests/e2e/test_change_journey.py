"""Change control in the browser: the product manager drafts a release and files a change
request, a reviewer reads the diff from their queue and signs it, the product manager implements
it; the requester cannot sign their own change; a signature is void once the content changes."""

import re

import httpx
import pytest
from playwright.sync_api import expect

from apps.accounts.services import token_create
from apps.catalog import services as catalog
from apps.changes import services as changes
from apps.changes.models import Approval, ChangeRequest
from apps.releases.models import Release
from apps.releases.services import release_create, release_freeze, release_release
from tests.factories import (
    PASSWORD,
    PromptTemplate,
    TeamFactory,
    member,
    model_version,
    product,
)
from tests.factories import artifact as make_artifact

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": []}


def _messages(second_line: str) -> list[dict]:
    return [
        {
            "role": "system",
            "content": f"You are the support assistant of Acme.\n{second_line}\nCite the article.",
        },
        {"role": "user", "content": "{{ question }}"},
    ]


def _organisation():
    """Team acme: priya (product manager) and rene (reviewer); a product with 1.0.0 released
    and a second version of its prompt, not yet released."""
    team = TeamFactory(slug="acme", name="Acme Support")
    pm = member("product_manager", team, username="priya", display_name="Priya Manager")
    reviewer = member("reviewer", team, username="rene", display_name="René Reviewer")
    prod = product(pm, team, slug="support-assistant", name="Support Assistant")
    prompt = make_artifact(pm, PromptTemplate, team, slug="support-answer", name="Support answer")
    v1, v2 = (
        catalog.prompt_version_create(
            actor=pm, prompt=prompt, messages=_messages(line), variables_schema=SCHEMA
        )
        for line in ("Be concise.", "Be concise and friendly.")
    )
    mv = model_version(pm, team, "echo-1")
    first = release_create(
        actor=pm, product=prod, version="1.0.0", prompt_version=v1, model_version=mv
    )
    first = release_release(actor=pm, release=release_freeze(actor=pm, release=first))
    return {"pm": pm, "reviewer": reviewer, "product": prod, "v1": v1, "v2": v2, "first": first}


def sign_in(page, username: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")


def sign_out(page, live_server) -> None:
    page.locator("details.usermenu > summary").click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(f"{live_server.url}/login/")


def _trail_entry(page, verb: str):
    return page.locator(f'.audit-trail li[data-verb="{verb}"]')


def test_change_journey(page, live_server, artifacts_dir):
    org = _organisation()
    prod, v2 = org["product"], org["v2"]
    nav = page.get_by_role("navigation", name="Main")

    # The product manager drafts 1.1.0 with the second prompt version.
    sign_in(page, "priya")
    nav.get_by_role("link", name="Products", exact=True).click()
    page.get_by_role("link", name="Support Assistant").click()
    expect(page.locator("[data-released]")).to_contain_text("1.0.0")
    page.locator("#releases").get_by_role("link", name="New release").click()
    expect(page.locator("#id_version")).to_have_value("1.1.0")
    expect(page.locator("#id_prompt_version")).to_have_value(str(org["v1"].pk))
    page.select_option("#id_prompt_version", str(v2.pk))
    page.fill("#id_notes", "Friendlier prompt.")
    page.screenshot(path=artifacts_dir / "release-form.png", full_page=True)
    page.get_by_role("button", name="Create draft release").click()
    expect(page.locator(".messages .alert-success")).to_contain_text("Draft release 1.1.0 created")
    expect(page.get_by_role("heading", level=1)).to_contain_text("1.1.0")
    expect(page.locator("h1 .badge")).to_have_text("draft")
    expect(page.locator('[data-section="prompt"] tr.diff-add')).to_have_text(
        "+Be concise and friendly."
    )
    page.screenshot(path=artifacts_dir / "release-detail.png", full_page=True)
    draft = Release.objects.get(product=prod, version="1.1.0")
    assert draft.prompt_version_id == v2.pk

    # ...files a change request that proposes it and submits it.
    page.get_by_role("link", name="File a change request").click()
    expect(page.locator("#id_proposed")).to_have_value(str(draft.pk))
    expect(page.locator("#id_baseline")).to_have_value(str(org["first"].pk))
    page.fill("#id_title", "Friendlier support prompt")
    page.select_option("#id_risk", "low")
    page.fill("#id_rationale", "Customers found the answers curt.")
    page.get_by_role("button", name="Create change request").click()
    expect(page.locator(".messages .alert-success")).to_contain_text("Change request drafted")
    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator(".messages .alert-success")).to_contain_text("Submitted for review")
    expect(page.locator("h1 .badge")).to_have_text("submitted")
    cr = ChangeRequest.objects.get(title="Friendlier support prompt")
    cr_url = f"{live_server.url}/changes/{cr.pk}/"
    sign_out(page, live_server)

    # The reviewer finds it in their queue, reads the diff and approves it.
    sign_in(page, "rene")
    expect(nav.locator("[data-nav-queue]")).to_have_text("1")
    nav.get_by_role("link", name=re.compile(r"^Changes")).click()
    expect(page.locator("#change-results")).to_contain_text("Friendlier support prompt")
    page.screenshot(path=artifacts_dir / "change-list.png", full_page=True)
    page.get_by_role("link", name=re.compile(r"^Waiting for me")).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Waiting for me")
    expect(page.locator("main table tbody tr")).to_have_count(1)
    page.screenshot(path=artifacts_dir / "change-queue.png", full_page=True)
    page.get_by_role("link", name="Friendlier support prompt").click()
    expect(page).to_have_url(cr_url)
    prompt_diff = page.locator('[data-section="prompt"]')
    removed, added = prompt_diff.locator("tr.diff-del"), prompt_diff.locator("tr.diff-add")
    expect(removed).to_have_count(1)
    expect(added).to_have_count(1)
    expect(removed.locator("td.text")).to_have_text("Be concise.")
    expect(removed.locator("td.marker")).to_have_text("-")
    expect(added.locator("td.text")).to_have_text("Be concise and friendly.")
    expect(added.locator("td.marker")).to_have_text("+")
    assert removed.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 235, 233)"
    assert added.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(230, 255, 236)"
    expect(page.locator(".review-card .quorum-badge")).to_have_text("Quorum not met")
    page.screenshot(path=artifacts_dir / "change-request-diff.png", full_page=True)
    page.fill("#id_comment", "Reads well; the tone is right.")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Approve").click()
    expect(page.locator(".messages .alert-success")).to_contain_text("Approved and signed as rene")
    expect(page.locator("h1 .badge")).to_have_text("approved")
    expect(page.locator(".review-card .quorum-badge")).to_have_text("Quorum met")
    signature = page.locator('.timeline li[data-decision="approve"]')
    expect(signature).to_contain_text("rene")
    expect(signature).to_contain_text("signed as reviewer")
    expect(signature).to_contain_text("Reads well; the tone is right.")
    expect(signature.locator(".badge-valid")).to_have_text("valid")
    expect(nav.locator("[data-nav-queue]")).to_have_count(0)
    sign_out(page, live_server)

    # The product manager implements it; the product page shows 1.1.0 released.
    sign_in(page, "priya")
    nav.get_by_role("link", name="Products", exact=True).click()
    page.get_by_role("link", name="Support Assistant").click()
    page.locator("#change-requests").get_by_role("link", name="Friendlier support prompt").click()
    page.get_by_role("button", name="Implement").click()
    expect(page.locator(".messages .alert-success")).to_contain_text("Implemented")
    expect(page.locator("h1 .badge")).to_have_text("implemented")

    # Every step is in the request's trail with its actor.
    for verb, actor in (
        ("change_request.created", "priya"),
        ("change_request.submitted", "priya"),
        ("change_request.in_review", "rene"),
        ("approval.signed", "rene"),
        ("change_request.approved", "rene"),
        ("change_request.implemented", "priya"),
    ):
        expect(_trail_entry(page, verb).locator("strong")).to_have_text(actor)
    page.screenshot(path=artifacts_dir / "change-request-implemented.png", full_page=True)

    page.get_by_role("link", name="Support Assistant").first.click()
    expect(page.locator("[data-released]")).to_have_attribute("data-released", "1.1.0")
    row = page.locator("#change-requests tbody tr", has_text="Friendlier support prompt")
    expect(row.locator(".badge")).to_have_text("implemented")
    old = page.locator("#releases tbody tr", has_text="1.0.0")
    expect(old.locator(".badge")).to_have_text("deprecated")
    page.screenshot(path=artifacts_dir / "product-released.png", full_page=True)
    draft.refresh_from_db()
    assert draft.status == "released"


def test_the_requester_cannot_approve(page, live_server):
    org = _organisation()
    pm, prod = org["pm"], org["product"]
    proposed = release_create(
        actor=pm,
        product=prod,
        version="1.1.0",
        prompt_version=org["v2"],
        model_version=org["first"].model_version,
    )
    cr = changes.change_request_create(
        actor=pm, product=prod, title="My own change", rationale="Mine.", proposed=proposed
    )
    cr = changes.change_request_submit(actor=pm, cr=cr)

    sign_in(page, "priya")
    page.goto(f"/changes/{cr.pk}/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("My own change")
    expect(page.get_by_role("button", name="Approve")).to_have_count(0)
    expect(page.get_by_role("button", name="Reject")).to_have_count(0)
    expect(page.locator("#id_password")).to_have_count(0)
    expect(page.locator("[data-sign-blocked]")).to_contain_text(
        "You requested this change or authored part of it"
    )
    expect(page.get_by_role("navigation", name="Main").locator("[data-nav-queue]")).to_have_count(0)

    # The API refuses the requester's signature too (the service enforces it).
    key = token_create(actor=pm, user=pm, name="e2e").key
    response = httpx.post(
        f"{live_server.url}/api/v1/change-requests/{cr.pk}/approve/",
        headers={"Authorization": f"Bearer {key}"},
        json={"password": PASSWORD, "comment": "Approving my own change."},
    )
    assert response.status_code == 403, response.text
    assert not Approval.objects.filter(change_request=cr).exists()


def test_an_approval_is_void_after_withdraw_edit_resubmit(page, live_server, artifacts_dir):
    org = _organisation()
    pm, reviewer, prod = org["pm"], org["reviewer"], org["product"]
    first_draft, second_draft = (
        release_create(
            actor=pm,
            product=prod,
            version=version,
            prompt_version=org["v2"],
            model_version=org["first"].model_version,
            settings=settings,
        )
        for version, settings in (("1.1.0", {}), ("1.2.0", {"max_tokens": 512}))
    )
    cr = changes.change_request_create(
        actor=pm, product=prod, title="Friendlier prompt", rationale="Curt.", proposed=first_draft
    )
    cr = changes.change_request_submit(actor=pm, cr=cr)
    changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD, comment="Fine.")

    sign_in(page, "priya")
    page.goto(f"/changes/{cr.pk}/")
    expect(page.locator("h1 .badge")).to_have_text("approved")
    expect(page.locator('.timeline li[data-decision="approve"] .badge-valid')).to_have_count(1)

    # Withdraw, propose the other draft, submit again.
    page.get_by_text("Withdraw…").click()
    page.locator(".withdraw-confirm textarea").fill("Cap the answer length first.")
    page.locator(".withdraw-confirm").get_by_role("button", name="Withdraw").click()
    expect(page.locator(".messages .alert-success")).to_contain_text("Withdrawn")
    expect(page.locator("h1 .badge")).to_have_text("withdrawn")
    page.get_by_role("link", name="Edit", exact=True).click()
    page.select_option("#id_proposed", str(second_draft.pk))
    page.get_by_role("button", name="Save change request").click()
    expect(page.locator(".messages .alert-success")).to_contain_text("Change request saved")
    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator("h1 .badge")).to_have_text("submitted")

    # The earlier approval is void and no longer counts.
    signature = page.locator('.timeline li[data-decision="approve"]')
    expect(signature).to_have_attribute("data-valid", "false")
    expect(signature.locator(".badge-void")).to_have_text("void")
    expect(page.locator("[data-void-alert]")).to_contain_text(
        "1 earlier signature no longer counts"
    )
    review = page.locator(".review-card")
    expect(review.locator(".quorum-badge")).to_have_text("Quorum not met")
    expect(review.locator('[data-role="reviewer"] .quorum-count')).to_have_text("0/1")
    settings_diff = page.locator('[data-section="settings"]')
    expect(settings_diff).to_contain_text("max tokens")
    expect(settings_diff).to_contain_text("512")
    expect(_trail_entry(page, "change_request.withdrawn").locator("strong")).to_have_text("priya")
    expect(_trail_entry(page, "change_request.reopened").locator("strong")).to_have_text("priya")
    page.screenshot(path=artifacts_dir / "change-request-void.png", full_page=True)
    sign_out(page, live_server)

    # It waits for the reviewer again.
    sign_in(page, "rene")
    expect(page.get_by_role("navigation", name="Main").locator("[data-nav-queue]")).to_have_text(
        "1"
    )
    page.goto(f"/changes/{cr.pk}/")
    expect(page.get_by_role("button", name="Approve")).to_have_count(1)
    cr.refresh_from_db()
    assert cr.proposed_id == second_draft.pk
    assert not Approval.objects.get(change_request=cr).is_valid_for(cr)

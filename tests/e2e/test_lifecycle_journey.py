"""The product lifecycle in the browser (pytest-django's live server; a real uvicorn server for
the gateway call).

1. The product manager writes a brief and an assessment for a new product and requests the move
   to design; a reviewer signs it with their password; the move to development is signed the
   same way, and the checklist of validation then shows what is missing.
2. The product manager deprecates the demo product (sunset date, migration note, successor); a
   reviewer signs; the subscriber is mailed the note, the product page lists them as not yet on
   the successor, and a gateway call answers with the ``Deprecation`` and ``Sunset`` headers.
"""

import email.utils
from datetime import timedelta

import httpx
import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from apps.accounts.models import User
from apps.catalog.models import Product
from apps.demo.services import seed_demo
from apps.portal import services as portal
from apps.portal.models import Plan, PublishedAPI
from tests.evaluations.factories import suite_with_cases
from tests.factories import PASSWORD, member, product
from tests.portal.gateway_server import GatewayServer
from tests.portal.service_factories import api as published_api
from tests.portal.service_factories import eager_tasks  # noqa: F401

from ..lifecycle.helpers import team_member

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def new_page(browser, live_server):
    """Browser contexts on the live server, one per user; fails on any 5xx."""
    contexts, failures = [], []

    def make():
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1360, "height": 1000}
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on(
            "response",
            lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 500 else None,
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert not failures, failures


def sign_in(page, username: str, password: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")


def sign(page, product_pk, comment: str, password: str) -> None:
    page.goto(f"/products/{product_pk}/")
    form = page.locator("[data-sign-form]")
    form.locator("input[name=password]").fill(password)
    form.locator("textarea[name=comment]").fill(comment)
    form.get_by_role("button", name="Sign and approve").click()


def test_brief_assessment_and_signed_moves(new_page, artifacts_dir):
    pm = member("product_manager")
    reviewer = team_member(pm, "reviewer")
    reviewer2 = team_member(pm, "reviewer")
    suite = suite_with_cases(pm).suite
    prod = product(pm, name="Invoice helper")

    page = new_page()
    sign_in(page, pm.username, PASSWORD)
    page.goto(f"/products/{prod.pk}/")
    design = page.locator('[data-move="design"]')
    expect(design.locator('[data-check="brief"]')).to_have_attribute("data-check-state", "missing")
    expect(design.get_by_role("button", name="Request move to design")).to_have_count(0)

    # The brief.
    page.get_by_role("link", name="Brief", exact=True).click()
    page.fill("#id_problem_statement", "Customers cannot find their invoices.")
    page.fill("#id_target_users", "Customers of the billing portal")
    page.fill(
        "#id_user_stories",
        "As a customer, I want my invoice link, so that I can pay\n"
        "As an agent, I want fewer invoice tickets, so that I help others",
    )
    page.fill("#id_intended_uses", "Finding invoices.")
    page.fill("#id_out_of_scope_uses", "Changing amounts.")
    page.fill("#id_data_sources", "Billing help articles")
    page.fill("#id_data_consent", "Public content")
    page.fill("#id_data_pii", "Invoice numbers only, never stored")
    page.fill("#id_target_metrics", f"pass_rate {suite.slug} >= 0.9\np95_latency_ms <= 2000")
    page.get_by_role("button", name="Save brief").click()
    expect(page.locator(".alert-success")).to_contain_text("Brief v1 is in force")

    # The assessment.
    page.locator("#lifecycle").get_by_role("link", name="Assessment").click()
    page.fill("#id_technical", "A small hosted model answers in time.")
    page.fill("#id_ethical", "Wrong links only cost a click; no decision about people.")
    page.fill("#id_risks", "Wrong invoice link | 2 | 2 | Links come from the billing system")
    page.fill("#id_affected_groups", "Customers\nSupport agents")
    page.fill("#id_calls_per_month", "20000")
    page.fill("#id_tokens_in_per_call", "400")
    page.fill("#id_tokens_out_per_call", "150")
    page.get_by_role("button", name="Save assessment").click()
    expect(page.locator(".alert-success")).to_contain_text("Assessment saved")

    # Design's criteria are met: request the move.
    expect(design).to_have_attribute("data-ready", "yes")
    design.get_by_role("button", name="Request move to design").click()
    expect(page.locator(".alert-success")).to_contain_text("someone else signs it")
    expect(page.locator("[data-sign-refusal]")).to_contain_text("someone else must sign")

    # A reviewer signs.
    other = new_page()
    sign_in(other, reviewer.username, PASSWORD)
    sign(other, prod.pk, "Problem and risks are clear.", PASSWORD)
    expect(other.locator(".alert-success")).to_contain_text("is now in design")
    assert Product.objects.get(pk=prod.pk).stage == "design"

    # Development: the team has reviewers; request, and the second reviewer signs.
    page.goto(f"/products/{prod.pk}/")
    development = page.locator('[data-move="development"]')
    expect(development).to_have_attribute("data-ready", "yes")
    development.get_by_role("button", name="Request move to development").click()
    third = new_page()
    sign_in(third, reviewer2.username, PASSWORD)
    sign(third, prod.pk, "Go build it.", PASSWORD)
    expect(third.locator(".alert-success")).to_contain_text("is now in development")

    # Validation says what is missing: a candidate release, and a run of the named suite.
    page.goto(f"/products/{prod.pk}/")
    validation = page.locator('[data-move="validation"]')
    expect(validation).to_have_attribute("data-ready", "no")
    for code in ("candidate_release", "target_suites_run"):
        expect(validation.locator(f'[data-check="{code}"]')).to_have_attribute(
            "data-check-state", "missing"
        )
    expect(validation.locator('[data-check="target_suites_run"]')).to_contain_text(suite.slug)
    page.screenshot(path=artifacts_dir / "lifecycle-journey-checklist.png", full_page=True)


def test_deprecating_the_demo_product(new_page, eager_tasks, mailoutbox, artifacts_dir):  # noqa: F811
    seed_demo()
    users = {u.username: u for u in User.objects.all()}
    demo = Product.objects.get(slug="support-assistant")
    api = PublishedAPI.objects.get(slug="support-assistant")
    dev = users["developer"]
    app = portal.application_create(actor=dev, name="Helpdesk widget")
    portal.subscription_request(
        actor=dev, application=app, plan=Plan.objects.get(api=api, slug="free")
    )
    secret = portal.key_create(actor=dev, application=app, name="widget").secret
    successor = published_api(users["pm"], slug="support-assistant-v2")
    sunset = (timezone.now() + timedelta(days=60)).replace(second=0, microsecond=0)

    page = new_page()
    sign_in(page, "pm", settings.DEMO_PASSWORD)
    page.goto(f"/products/{demo.pk}/")
    move = page.locator('[data-move="deprecated"]')
    move.locator("input[name=sunset_at]").fill(sunset.strftime("%Y-%m-%dT%H:%M"))
    move.locator("textarea[name=migration_note]").fill("Switch to support-assistant-v2.")
    move.locator("select[name=successor]").select_option(successor.slug)
    move.get_by_role("button", name="Request move to deprecated").click()
    expect(page.locator(".alert-success")).to_contain_text("Move to deprecated requested")

    mailoutbox.clear()
    other = new_page()
    sign_in(other, "reviewer", settings.DEMO_PASSWORD)
    sign(other, demo.pk, "Sunset agreed with support.", settings.DEMO_PASSWORD)
    expect(other.locator(".alert-success")).to_contain_text("is now in deprecated")

    # The subscriber is told, and the product page lists them as not yet on the successor.
    to_dev = [m for m in mailoutbox if dev.email in m.to]
    assert to_dev, [m.to for m in mailoutbox]
    assert "Switch to support-assistant-v2." in to_dev[0].body
    other.goto(f"/products/{demo.pk}/")
    row = other.locator("[data-migration] tbody tr", has_text="Helpdesk widget")
    expect(row).to_have_attribute("data-migrated", "no")
    other.screenshot(path=artifacts_dir / "lifecycle-journey-deprecated.png", full_page=True)

    # The gateway says so on every call.
    server = GatewayServer().start()
    try:
        response = httpx.post(
            f"{server.v1}/chat/completions",
            headers={"Authorization": f"Bearer {secret}"},
            json={
                "model": "support-assistant",
                "messages": [],
                "variables": {"company": "Demo Inc.", "question": "Where is my invoice?"},
            },
            timeout=30,
        )
    finally:
        server.stop()
        server.log.unlink(missing_ok=True)
    assert response.status_code == 200, response.text
    assert response.headers["deprecation"]
    assert email.utils.parsedate_to_datetime(response.headers["sunset"]) == sunset

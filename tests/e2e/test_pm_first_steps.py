"""The product manager's first steps: sign in, create a product and a prompt template, register
two versions and read their diff."""

import json

import pytest
from playwright.sync_api import expect

from apps.catalog.models import Product, PromptTemplateVersion
from tests.factories import PASSWORD, TeamFactory, member

SCHEMA = {
    "type": "object",
    "properties": {"company": {"type": "string"}, "question": {"type": "string"}},
    "required": ["company", "question"],
}


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_pm_first_steps(page, live_server, artifacts_dir):
    team = TeamFactory(slug="acme", name="Acme Support")
    member("product_manager", team, username="priya", display_name="Priya Manager")
    nav = page.get_by_role("navigation", name="Main")

    # Sign in through the form.
    page.goto("/products/")
    expect(page).to_have_url(f"{live_server.url}/login/?next=/products/")
    page.fill("#id_username", "priya")
    page.fill("#id_password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Products")
    expect(page.locator(".role-chip")).to_have_text("Product manager")

    # Create a product.
    page.get_by_role("link", name="New product").click()
    page.fill("#id_name", "Support Assistant")
    page.fill("#id_slug", "support-assistant")
    page.select_option("#id_risk_class", "limited")
    page.fill("#id_intended_use", "Answers customers' questions from the help centre.")
    page.get_by_role("button", name="Create product").click()
    expect(page.locator(".alert-success")).to_contain_text("Support Assistant")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Support Assistant")
    # Moving on is a signed stage gate (tests/e2e/test_lifecycle_journey.py): the product page
    # says what design needs.
    expect(page.locator('[data-move="design"] [data-check="brief"]')).to_have_attribute(
        "data-check-state", "missing"
    )
    assert Product.objects.get(slug="support-assistant").stage == "concept"

    # Search the product list (htmx swaps the table).
    nav.get_by_role("link", name="Products", exact=True).click()
    page.get_by_role("searchbox").fill("nothing-like-this")
    expect(page.locator("#product-results")).to_contain_text("No matching products")
    page.get_by_role("searchbox").fill("support")
    expect(page.locator("#product-results")).to_contain_text("Support Assistant")

    # Create a prompt template and register two versions.
    nav.get_by_role("link", name="Prompts", exact=True).click()
    page.get_by_role("link", name="New prompt template").click()
    page.fill("#id_name", "Support answer")
    page.fill("#id_slug", "support-answer")
    page.get_by_role("button", name="Create prompt template").click()
    page.get_by_role("link", name="Register the first version").click()
    page.fill(
        "#id_messages-0-content",
        "You are the support assistant of {{ company }}.\nBe concise.\nCite the article.",
    )
    page.fill("#id_messages-1-content", "{{ question }}")
    page.fill("#id_variables_schema", json.dumps(SCHEMA, indent=2))
    page.fill("#id_parameters", '{"temperature": 0.2}')
    page.fill("#id_changelog", "First version.")
    page.get_by_role("button", name="Register version").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("v1")

    page.get_by_role("link", name="New version").click()
    expect(page.locator("#id_messages-0-content")).to_contain_text("Be concise.")
    page.fill(
        "#id_messages-0-content",
        "You are the support assistant of {{ company }}.\nBe concise and friendly.\n"
        "Cite the article.",
    )
    page.fill("#id_changelog", "Friendlier.")
    page.get_by_role("button", name="Register version").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("v2")
    assert PromptTemplateVersion.objects.filter(prompt__slug="support-answer").count() == 2

    # Render preview (htmx).
    page.fill("#id_variables", '{"company": "Acme", "question": "Where is my invoice?"}')
    page.get_by_role("button", name="Render").click()
    expect(page.locator("[data-rendered]")).to_contain_text("support assistant of Acme")

    # The diff shows the changed line as removed and added.
    page.get_by_role("link", name="Diff with v1").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("v1 → v2")
    removed = page.locator("tr.diff-del")
    added = page.locator("tr.diff-add")
    expect(removed).to_have_count(1)
    expect(added).to_have_count(1)
    expect(removed.locator("td.text")).to_have_text("Be concise.")
    expect(removed.locator("td.marker")).to_have_text("-")
    expect(added.locator("td.text")).to_have_text("Be concise and friendly.")
    expect(added.locator("td.marker")).to_have_text("+")
    expect(page.locator("tr.diff-ctx td.text", has_text="Cite the article.")).to_have_count(1)
    assert removed.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 235, 233)"
    assert added.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(230, 255, 236)"
    page.screenshot(path=artifacts_dir / "pm-prompt-diff.png", full_page=True)

    # The product page and the dashboard, as the PM now sees them.
    page.goto("/products/")
    page.get_by_role("link", name="Support Assistant").click()
    expect(page.locator("main")).to_contain_text("Support answer")
    page.screenshot(path=artifacts_dir / "pm-product-detail.png", full_page=True)
    nav.get_by_role("link", name="Dashboard", exact=True).click()
    expect(page.locator("[data-count=products]")).to_have_text("1")
    expect(page.locator(".feed")).to_contain_text("prompt_version.created")
    page.screenshot(path=artifacts_dir / "pm-dashboard.png", full_page=True)

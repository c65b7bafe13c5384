"""The developer's journey in the browser, against a real uvicorn server that serves the pages
and the ``/v1/`` gateway from one ASGI app (``tests.portal.gateway_server.GatewayServer``).

On the demo organisation, the developer browses the catalog, reads the docs of
``support-assistant``, creates an application and requests the ``pro`` plan; an admin approves
the request from the queue in a second browser; the developer creates a key (shown once), calls
the API with the official ``openai`` client, sees the call in the usage chart, rotates the key
(both keys work during the grace period) and revokes the new one, which the server refuses at
once.

The server is a subprocess with the default password hashers, so the demo's passwords are
hashed here with a cheap PBKDF2 (its iteration count is in the hash: the server checks it).
"""

import datetime as dt
import re
import time
import uuid

import openai
import pytest
from django.conf import settings
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.utils import dateformat, timezone
from openai import OpenAI
from playwright.sync_api import expect

from apps.demo.services import seed_demo
from apps.portal.models import APIKey, UsageRecord
from apps.releases.models import Release
from tests.portal.gateway_server import GatewayServer

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

API = "support-assistant"
SAMPLE_VARIABLES = {"company": "Demo Inc.", "question": "Where is my invoice?"}


class QuickPBKDF2(PBKDF2PasswordHasher):
    """``pbkdf2_sha256`` with few iterations: hashes the server's default hasher verifies."""

    iterations = 1_000


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Overrides the conftest's MD5, which the server (default hashers) would refuse."""
    settings.PASSWORD_HASHERS = [f"{__name__}.QuickPBKDF2"]


@pytest.fixture
def demo():
    return seed_demo()


@pytest.fixture
def server(demo):
    srv = GatewayServer()
    srv.extra_env["PORTAL_PUBLIC_URL"] = srv.base_url  # the docs' examples name this server
    srv.start()
    yield srv
    code = srv.stop()  # SIGTERM: the lifespan writes the pending usage rows before the flush
    output = srv.output()
    srv.log.unlink(missing_ok=True)
    assert code in (0, -15, None), output[-3000:]
    assert "Traceback" not in output, output[-3000:]


@pytest.fixture
def new_page(browser, server):
    """Opens browser contexts on the server (one per user); fails the test on any 4xx/5xx."""
    contexts, failures = [], []

    def make():
        context = browser.new_context(
            base_url=server.base_url, viewport={"width": 1360, "height": 900}
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on(
            "response",
            lambda r: (
                failures.append(f"{r.status} {r.request.method} {r.url}")
                if r.status >= 400
                else None
            ),
        )
        return page

    yield make
    for context in contexts:
        context.close()
    assert not failures, f"HTTP errors while browsing: {failures}"


def sign_in(page, username: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", settings.DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")


def variables_for(release: Release) -> dict:
    """Values for the required variables of the release's prompt (from its schema). The
    question is new on every run: the release caches answers, in a cache that outlives the
    test database (the data directory's files, or Redis), and a cached answer costs nothing."""
    schema = release.prompt_version.variables_schema
    required = schema.get("required", [])
    assert required, schema
    values = {name: SAMPLE_VARIABLES.get(name, f"a {name}") for name in required}
    if "question" in values:
        values["question"] += f" (ticket {uuid.uuid4().hex[:8]})"
    return values


def ask(server, secret: str, variables: dict):
    client = OpenAI(base_url=server.v1, api_key=secret, max_retries=0)
    return client.chat.completions.create(
        model=API, messages=[], extra_body={"variables": variables}
    )


def new_secret(page) -> str:
    panel = page.locator("#new-key-panel")
    expect(panel).to_contain_text("it will not be shown again")
    secret = page.locator("#new-key-secret").input_value()
    assert secret.startswith("plm_"), secret
    return secret


def test_developer_journey(new_page, server, demo, artifacts_dir):
    release = Release.objects.get(product=demo["product"], status="released")
    variables = variables_for(release)

    # The developer signs in, opens the portal from the main nav and the API from the catalog.
    dev = new_page()
    sign_in(dev, "developer")
    dev.get_by_role("navigation", name="Main").get_by_role(
        "link", name=re.compile(r"^Portal")
    ).click()
    expect(dev.get_by_role("heading", level=1)).to_have_text("API catalog")
    card = dev.locator(f'.api-card[data-api="{API}"]')
    expect(card).to_contain_text("Answers customers' support questions")
    expect(card.locator(".plan-chip")).to_have_text(["Free", "Pro · approval"])
    card.get_by_role("link", name="Support assistant").click()
    expect(dev).to_have_url(f"{server.base_url}/portal/apis/{API}/")

    # The docs: the rendered Markdown and the reference generated from the release.
    docs = dev.locator("#docs .markdown")
    expect(docs.get_by_role("heading", level=1)).to_have_text("Support assistant")
    expect(docs.locator("pre code").first).to_contain_text('model="support-assistant"')
    reference = dev.locator("#reference")
    expect(reference).to_contain_text(f"variables of release {release.version}")
    rows = reference.locator("table.reference-table tbody tr")
    expect(rows).to_have_count(len(release.prompt_version.variables_schema["properties"]))
    for name in variables:  # the required ones say so
        expect(reference.locator(f'tr[data-variable="{name}"] td').nth(1)).to_have_text("yes")
    expect(reference.locator('tr[data-variable="language"] td').nth(1)).to_have_text("no")
    curl = dev.locator("#example-curl")
    expect(curl).to_contain_text(f"curl {server.v1}/chat/completions")
    expect(curl).to_contain_text(f'"model": "{API}"')
    python = dev.locator("#example-python")
    expect(python).to_contain_text("from openai import OpenAI")
    expect(python).to_contain_text(f'OpenAI(base_url="{server.v1}"')
    expect(python).to_contain_text(f'model="{API}"')
    expect(python).to_contain_text("variables")
    plans = dev.locator("#plans-offered")
    expect(plans.locator('tr[data-plan="pro"]')).to_contain_text("600")
    expect(plans.locator('tr[data-plan="pro"]')).to_contain_text("required")
    expect(plans.locator('[data-plan-terms="pro"]')).to_contain_text("tell us what your")
    dev.screenshot(path=artifacts_dir / "developer-journey-api.png", full_page=True)

    # An application, made from the API's page; then a request for the pro plan.
    subscribe = dev.locator("#subscribe")
    subscribe.get_by_label("Name").fill("Helpdesk widget")
    subscribe.get_by_role("button", name="Create application").click()
    expect(dev.locator(".messages")).to_contain_text("Application “Helpdesk widget” created")
    form = dev.locator("#subscribe-form")
    expect(form.get_by_label("Application")).to_have_value(
        str(dev.evaluate("() => new URLSearchParams(location.search).get('application')"))
    )
    form.get_by_role("radio", name=re.compile(r"^Pro — 600 requests")).check()
    form.get_by_label("Justification").fill(
        "Our helpdesk widget answers about 20,000 questions a day."
    )
    form.get_by_role("button", name="Subscribe").click()
    expect(dev.locator(".messages")).to_contain_text(
        f"Helpdesk widget's subscription to {API} (Pro) is pending approval"
    )
    expect(dev.get_by_role("heading", level=1)).to_have_text("Helpdesk widget")
    app_url = dev.url
    sub_row = dev.locator(f'#subscriptions tr[data-api="{API}"]')
    expect(sub_row.locator("[data-state]")).to_have_text("pending approval")
    expect(sub_row).to_contain_text("waiting for an approver")

    # The admin, in a browser of their own: the nav badge counts the request; approve it.
    admin = new_page()
    sign_in(admin, "admin")
    nav = admin.get_by_role("navigation", name="Main")
    expect(nav.locator("[data-nav-portal]")).to_have_text("1")
    nav.get_by_role("link", name=re.compile(r"^Portal")).click()
    admin.get_by_role("link", name="Subscription requests").click()
    expect(admin.get_by_role("heading", level=1)).to_have_text("Subscription requests")
    expect(admin.locator(f'#queue-counts li[data-api="{API}"][data-plan="pro"]')).to_contain_text(
        "1"
    )
    request = admin.locator("#queue tbody tr", has_text="Helpdesk widget")
    expect(request).to_have_count(1)
    expect(request).to_contain_text("owner developer")
    expect(request).to_contain_text("20,000 questions a day")
    admin.screenshot(path=artifacts_dir / "developer-journey-queue.png", full_page=True)
    request.get_by_placeholder("Comment").fill("Welcome aboard.")
    request.get_by_role("button", name="Approve").click()
    expect(admin.locator(".messages")).to_contain_text(
        f"Approved: Helpdesk widget may now call {API} (Pro)."
    )
    expect(admin.locator('[data-empty="queue"]')).to_be_visible()
    expect(admin.locator("[data-nav-portal]")).to_have_count(0)

    # The developer: the subscription is active; a key, shown once.
    dev.reload()
    expect(sub_row.locator("[data-state]")).to_have_text("active")
    expect(sub_row).to_contain_text("admin")
    keys = dev.locator("#keys")
    expect(keys.locator('[data-empty="keys"]')).to_be_visible()
    keys.get_by_label("Name").fill("production")
    keys.get_by_role("button", name="Create key").click()
    secret = new_secret(dev)
    first_key = APIKey.objects.get(application__name="Helpdesk widget")
    assert secret.startswith(f"plm_live_{first_key.prefix}_")
    expect(keys.locator(f'tr[data-key="{first_key.pk}"]')).to_have_attribute(
        "data-key-status", "active"
    )
    dev.screenshot(path=artifacts_dir / "developer-journey-key.png", full_page=True)
    dev.reload()
    expect(dev.locator("#keys .key-table")).to_contain_text(first_key.prefix)
    expect(dev.locator("#new-key-panel")).to_have_count(0)
    assert secret not in dev.content()

    # A call with the official client: an answer and its usage.
    reply = ask(server, secret, variables)
    answer = reply.choices[0].message.content
    assert answer and variables["question"] in answer, answer
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens > 0
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens

    # The usage chart of the application shows it (the server writes usage rows in batches,
    # within ~50 ms; the page reads the raw records of the hours no rollup covers yet).
    record, deadline = None, time.monotonic() + 5
    while record is None and time.monotonic() < deadline:
        record = UsageRecord.objects.filter(key=first_key).first()
        time.sleep(0.05)
    assert record is not None, "the server wrote no usage row"
    assert (record.tokens_in, record.tokens_out) == (
        reply.usage.prompt_tokens,
        reply.usage.completion_tokens,
    )
    assert record.cost > 0, record.cost  # not a cached answer: the built-in price table
    at = record.created_at.astimezone(dt.UTC)
    buckets = {
        "hour": at.replace(minute=0, second=0, microsecond=0),
        "day": at.replace(hour=0, minute=0, second=0, microsecond=0),
    }
    dev.goto(app_url)
    for period, start in buckets.items():
        window = dev.locator(f'#usage [data-usage-window="{period}"]')
        expect(window.locator(f'[data-total="{period}-requests"]')).to_have_text("1")
        expect(window.locator(f'[data-total="{period}-tokens"]')).to_have_text(
            str(reply.usage.total_tokens)
        )
        bucket = window.locator(f'table.usage-table tr[data-bucket="{start.isoformat()}"]')
        expect(bucket.locator("td").first).to_have_text("1")  # requests
        expect(window.locator("[data-usage-empty]")).to_have_count(0)
    expect(dev.locator(f'tr[data-key="{first_key.pk}"]')).not_to_contain_text("never")
    dev.screenshot(path=artifacts_dir / "developer-journey-usage.png", full_page=True)

    # Rotate: the new secret once, and until when the old key keeps working; both work.
    row = dev.locator(f'tr[data-key="{first_key.pk}"]')
    row.locator("summary", has_text="Rotate").click()
    row.get_by_role("button", name="Yes, rotate").click()
    rotated_secret = new_secret(dev)
    assert rotated_secret != secret
    first_key.refresh_from_db()
    until = dateformat.format(timezone.localtime(first_key.grace_ends_at), "Y-m-d H:i")
    expect(dev.locator("[data-grace-until]")).to_contain_text(
        f"The old key ({first_key.prefix}…) keeps working until {until}"
    )
    second_key = APIKey.objects.get(rotated_from=first_key)
    expect(dev.locator(f'tr[data-key="{first_key.pk}"]')).to_have_attribute(
        "data-key-status", "in grace"
    )
    expect(dev.locator(f'tr[data-key="{second_key.pk}"]')).to_have_attribute(
        "data-key-status", "active"
    )
    dev.screenshot(path=artifacts_dir / "developer-journey-rotated.png", full_page=True)
    for key in (secret, rotated_secret):
        assert ask(server, key, variables).choices[0].message.content

    # Revoke the new key (confirmed): the server refuses the very next call with it.
    row = dev.locator(f'tr[data-key="{second_key.pk}"]')
    row.locator("summary", has_text="Revoke").click()
    row.get_by_role("button", name="Yes, revoke").click()
    expect(dev.locator(".messages")).to_contain_text(
        f"({second_key.prefix}…) is revoked: calls with it now get 401."
    )
    expect(dev.locator(f'tr[data-key="{second_key.pk}"]')).to_have_attribute(
        "data-key-status", "revoked"
    )
    assert rotated_secret not in dev.content()
    with pytest.raises(openai.AuthenticationError) as refused:
        ask(server, rotated_secret, variables)
    assert refused.value.status_code == 401
    assert "revoked" in str(refused.value)
    assert ask(server, secret, variables).choices[0].message.content  # the old one, in grace

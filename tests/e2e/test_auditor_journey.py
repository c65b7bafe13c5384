"""The auditor's journey on the demo organisation.

In the browser: the auditor signs in, finds the demo product's implemented change request, reads
its signed approvals, filters the audit trail by the reviewer who signed, verifies the chain on a
real Celery worker (it ends "intact"), opens what was live at an instant before the change (the
earlier release) and downloads the release's dossier (a ZIP with ``manifest.json``).

Without a browser: the auditor attempts every write of the REST API (every POST, PUT, PATCH and
DELETE of the OpenAPI schema, on the demo's real objects where there are some) and of the main
page forms, and is refused each time; nothing in the database changes, and the audit chain's
head does not move. Starting a verification run is the auditor's own read action, allowed (the
browser journey does it); so is managing their own personal access tokens.
"""

import datetime as dt
import hashlib
import io
import json
import re
import time
import uuid
import zipfile

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from apps.accounts.models import Team, User
from apps.accounts.services import token_create
from apps.audit.models import AuditChainHead, AuditEvent
from apps.catalog.models import (
    Dataset,
    DatasetVersion,
    Model,
    ModelVersion,
    Product,
    PromptTemplate,
    PromptTemplateVersion,
)
from apps.changes import services as changes
from apps.changes.models import ApprovalPolicy, ChangeRequest
from apps.compliance.services import incident_file
from apps.demo.services import seed_demo
from apps.evaluations.models import EvalSuite, EvalSuiteVersion
from apps.gateway.models import Provider
from apps.portal import services as portal
from apps.portal.models import Plan, PublishedAPI
from apps.releases.models import Release

pytestmark = [pytest.mark.e2e]

CHANGE_TITLE = "Friendlier prompt that answers in the user's language"


def _users() -> dict[str, User]:
    return {u.username: u for u in User.objects.filter(username__in=("pm", "reviewer", "auditor"))}


def _implement_the_change_in_review() -> ChangeRequest:
    """The demo's change request in review (1.0.0 → 1.1.0), signed by the reviewer and
    implemented by the product manager, at least a second after 1.0.0 went live and the demo's
    API was created: the "live at"
    form takes whole seconds, so an instant strictly between the two releases exists."""
    users = _users()
    cr = ChangeRequest.objects.get(title=CHANGE_TITLE)
    first = Release.objects.get(product=cr.product, version="1.0.0")
    api = PublishedAPI.objects.get(slug="support-assistant")
    live_since = max(first.effective_from, api.created_at)  # both exist from here on
    wait = 1.1 - (timezone.now() - live_since).total_seconds()
    if wait > 0:
        time.sleep(wait)
    cr, _ = changes.change_request_approve(
        actor=users["reviewer"],
        cr=cr,
        password=settings.DEMO_PASSWORD,
        comment="The evaluation passed; the tone is right.",
    )
    return changes.change_request_implement(actor=users["pm"], cr=cr)


def sign_in(page, username: str) -> None:
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", settings.DEMO_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")


# --- the journey in the browser --------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_auditor_journey(page, live_server, artifacts_dir, celery_worker, settings):
    settings.AUDIT_TASK_QUEUE = celery_worker.queue
    seed_demo()
    cr = _implement_the_change_in_review()
    first = Release.objects.get(product=cr.product, version="1.0.0")
    second = Release.objects.get(pk=cr.proposed_id)
    nav = page.get_by_role("navigation", name="Main")

    # The auditor finds the implemented change request of the demo product.
    sign_in(page, "auditor")
    nav.get_by_role("link", name=re.compile(r"^Changes")).click()
    page.locator("select[name=state]").select_option("implemented")
    results = page.locator("#change-results")
    expect(results.get_by_role("link", name=CHANGE_TITLE)).to_be_visible()
    expect(
        results.get_by_role("link", name="First release of the support assistant")
    ).to_be_visible()
    page.screenshot(path=artifacts_dir / "auditor-journey-changes.png", full_page=True)
    results.get_by_role("link", name=CHANGE_TITLE).click()
    expect(page).to_have_url(f"{live_server.url}/changes/{cr.pk}/")
    expect(page.locator("h1 .badge")).to_have_text("implemented")

    # ...and reads its approvals: the reviewer's signature, valid for the content implemented.
    expect(page.locator(".review-card .quorum-badge")).to_have_text("Quorum met")
    expect(page.locator('.quorum li[data-role="reviewer"]')).to_contain_text("Approved by reviewer")
    signature = page.locator('.timeline li[data-decision="approve"]')
    expect(signature).to_have_count(1)
    expect(signature).to_contain_text("reviewer")
    expect(signature).to_contain_text("signed as reviewer")
    expect(signature).to_contain_text("The evaluation passed; the tone is right.")
    expect(signature.locator(".badge-valid")).to_have_text("valid")
    expect(signature.locator(".meta")).to_contain_text(f"fingerprint {cr.fingerprint[:12]}")
    comment = page.locator('.timeline li[data-decision="comment"]')
    expect(comment).to_contain_text("reviewer2")
    # An auditor signs nothing and changes nothing here.
    expect(page.locator(".sign-form")).to_have_count(0)
    expect(page.locator(".comment-form")).to_have_count(0)
    expect(page.get_by_role("button", name="Implement")).to_have_count(0)
    page.screenshot(path=artifacts_dir / "auditor-journey-approvals.png", full_page=True)

    # The trail, filtered by the reviewer: their signature and the approval it completed.
    nav.get_by_role("link", name="Audit", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Audit trail")
    page.fill("#id_actor", "reviewer")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]actor=reviewer(&|$)"))
    rows = page.locator("#trail-results table.trail-table > tbody > tr")
    expected = AuditEvent.objects.filter(actor__username="reviewer").count()
    expect(rows).to_have_count(expected)
    actors = rows.locator("td:nth-child(3) > a")
    assert set(actors.all_inner_texts()) == {"reviewer"}
    verbs = set(rows.locator(".verb").all_inner_texts())
    assert {"approval.signed", "change_request.approved"} <= verbs, verbs
    page.screenshot(path=artifacts_dir / "auditor-journey-trail.png", full_page=True)

    # Verify: a run on the real worker, polled until it ends intact.
    page.goto("/audit/verify/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Verify the audit trail")
    page.locator("[data-verify-start]").click()
    run = page.locator("#verify-run .verify-run")
    expect(run).to_have_attribute("data-run-state", "intact", timeout=60_000)
    expect(run.locator('[data-result="intact"]')).to_contain_text("The audit chain is intact")
    total = AuditEvent.objects.filter(verb="audit.verification_started").first().seq
    counts = run.locator("[data-counts]")
    checked = int(counts.locator("strong").inner_text())
    assert checked >= total, (checked, total, celery_worker.output()[-2000:])
    expect(page.locator("#verify-runs")).to_contain_text("intact")
    page.screenshot(path=artifacts_dir / "auditor-journey-verify.png", full_page=True)

    # What was live at an instant before the change: the earlier release, 1.0.0.
    assert first.effective_from < second.effective_from
    # A whole second after both the release and the demo's API existed (seeding can take more
    # than a second on a loaded machine), and before the change.
    api_created = PublishedAPI.objects.get(slug="support-assistant").created_at
    before = (max(first.effective_from, api_created) + dt.timedelta(seconds=1)).replace(
        microsecond=0
    )
    assert first.effective_from < before < second.effective_from
    page.goto(f"/products/{cr.product.slug}/live/")
    expect(page.locator("[data-live-release]")).to_have_attribute("data-live-release", "1.1.0")
    page.fill("#id_at", timezone.localtime(before).strftime("%Y-%m-%dT%H:%M:%S"))
    page.locator("[data-live-form]").get_by_role("button", name="Show").click()
    expect(page.locator("[data-at]")).to_have_attribute("data-at", before.isoformat())
    live = page.locator("[data-live-release]")
    expect(live).to_have_attribute("data-live-release", "1.0.0")
    expect(live).to_contain_text(first.fingerprint[:12])
    expect(page.locator('[data-live-api="support-assistant"]')).to_contain_text("Serves 1.0.0")
    page.screenshot(path=artifacts_dir / "auditor-journey-live-before.png", full_page=True)

    # The dossier of the release the change made live, read and downloaded.
    page.goto(f"/releases/{second.pk}/dossier/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("1.1.0")
    expect(page.locator("#changes")).to_contain_text(CHANGE_TITLE)
    page.screenshot(path=artifacts_dir / "auditor-journey-dossier.png", full_page=True)
    with page.expect_download() as info:
        page.get_by_role("link", name="Download ZIP").click()
    download = info.value
    assert download.suggested_filename.endswith(".zip"), download.suggested_filename
    data = download.path().read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert "manifest.json" in names, names
        manifest = json.loads(archive.read("manifest.json"))
    assert second.fingerprint in json.dumps(manifest)
    assert AuditEvent.objects.filter(
        verb="release.dossier_exported", actor__username="auditor"
    ).exists()


# --- the auditor changes nothing -------------------------------------------------------------

# Writes an auditor may make, so not attempted: starting a verification run is the auditor's own
# read of the chain (it records ``audit.verification_started``), and a personal access token is
# the auditor's own credential (the test authenticates with one).
AUDITOR_MAY = {
    ("POST", "/api/v1/audit/verifications/"),
    ("POST", "/api/v1/tokens/"),
}
# POSTs that only read: rendering a prompt version with sample variables writes nothing.
READS = {("POST", "/api/v1/prompt-versions/{id}/render/")}
WRITE_METHODS = ("post", "put", "patch", "delete")
RESOURCE = re.compile(r"^/api/v1/(?P<resource>[a-z-]+)/\{id\}/")
# Another user's personal token is outside anyone's scope but its owner's: a 404, as for any
# object out of scope.
OUT_OF_SCOPE = {("POST", "/api/v1/tokens/{id}/revoke/")}
# Rows that a refused request still touches: a token's last use (housekeeping, not history).
VOLATILE = {("accounts", "personalaccesstoken")}


def _world() -> dict:
    """The demo organisation, and what the demo leaves out: the developer's application with
    a key and a pending ``pro`` subscription, an incident, the product manager's token."""
    seed_demo()
    users = {u.username: u for u in User.objects.all()}
    product = Product.objects.get(slug="support-assistant")
    api = PublishedAPI.objects.get(slug="support-assistant")
    application = portal.application_create(actor=users["developer"], name="Helpdesk bot")
    subscription = portal.subscription_request(
        actor=users["developer"],
        application=application,
        plan=Plan.objects.get(api=api, slug="pro"),
        justification="Our helpdesk widget.",
    )
    key = portal.key_create(actor=users["developer"], application=application, name="ci").key
    incident = incident_file(actor=users["pm"], product=product, title="Wrong invoice link")
    pm_token = token_create(actor=users["pm"], user=users["pm"], name="pm").token
    in_review = ChangeRequest.objects.get(title=CHANGE_TITLE)
    ids = {
        "api-keys": key.pk,
        "apis": api.pk,
        "applications": application.pk,
        "approval-policies": ApprovalPolicy.objects.get(product=product).pk,
        "change-requests": in_review.pk,
        "dataset-versions": DatasetVersion.objects.first().pk,
        "datasets": Dataset.objects.first().pk,
        "eval-suite-versions": EvalSuiteVersion.objects.first().pk,
        "eval-suites": EvalSuite.objects.first().pk,
        "incidents": incident.pk,
        "model-versions": ModelVersion.objects.first().pk,
        "models": Model.objects.first().pk,
        "plans": Plan.objects.get(api=api, slug="pro").pk,
        "products": product.pk,
        "prompt-versions": PromptTemplateVersion.objects.order_by("version").first().pk,
        "prompts": PromptTemplate.objects.first().pk,
        "providers": Provider.objects.first().pk,
        "releases": in_review.proposed_id,
        "subscriptions": subscription.pk,
        "tokens": pm_token.pk,
    }
    return {
        "users": users,
        "team": Team.objects.get(slug="demo"),
        "product": product,
        "api": api,
        "cr": in_review,
        "release": Release.objects.get(product=product, version="1.0.0"),
        "subscription": subscription,
        "key": key,
        "incident": incident,
        "pm_token": pm_token,
        "ids": {name: str(pk) for name, pk in ids.items()},
    }


def _bodies(world: dict) -> tuple[dict, dict]:
    """Minimal bodies for every write (one for creates and actions, one for updates) on the
    demo's objects, valid for a user who may write: a refusal is about who asks, not about a
    malformed request."""
    ids = world["ids"]
    release = str(world["release"].pk)
    post = {
        "slug": "auditor-was-here",
        "name": "Auditor was here",
        "title": "Auditor was here",
        "description": "Auditor was here.",
        "rationale": "Auditor was here.",
        "risk": "low",
        "owner_team": world["team"].slug,
        "product": ids["products"],
        "api": ids["apis"],
        "plan": ids["plans"],
        "application": ids["applications"],
        "proposed": ids["releases"],
        "release": release,
        "version": "9.9.9",
        "prompt": ids["prompts"],
        "model": ids["models"],
        "dataset": ids["datasets"],
        "suite": ids["eval-suites"],
        "dataset_version": ids["dataset-versions"],
        "dataset_versions": [ids["dataset-versions"]],
        "uri": "https://data.example/faq.jsonl",
        "prompt_version": ids["prompt-versions"],
        "model_version": ids["model-versions"],
        "messages": [{"role": "user", "content": "Hello."}],
        "variables": {"company": "Demo Inc.", "question": "Where is my invoice?"},
        "cases": [{"variables": {"question": "Hi?"}, "expected": "Hello."}],
        "provider": "builtin",
        "provider_model": "echo-1",
        "kind": "builtin",
        "input_per_million": "1.00",
        "output_per_million": "1.00",
        "requests_per_minute": 10,
        "sunset_at": (timezone.now() + dt.timedelta(days=90)).isoformat(),
        "migration_note": "Auditor was here.",
        "template": "prompt_injection",
        "severity": "sev3",
        "comment": "Auditor was here.",
        "reason": "Auditor was here.",
        "justification": "Auditor was here.",
        "password": settings.DEMO_PASSWORD,
        "stage": "production",
        "required_roles": [{"role": "reviewer", "quorum": 1}],
    }
    patch = {
        "name": "Auditor was here",
        "title": "Auditor was here",
        "notes": "Auditor was here.",
        "description": "Auditor was here.",
        "veto": False,
    }
    return post, patch


# Runs name a release alone (not also a prompt and a model version) and no suite version.
RUNS = re.compile(r"^/api/v1/(playground-runs|batch-runs|eval-runs)/$")


def _snapshot() -> dict[str, str]:
    """A digest of every table's rows (but the volatile ones)."""
    digests = {}
    for model in django_apps.get_models(include_auto_created=True):
        meta = model._meta
        if meta.proxy or not meta.managed or (meta.app_label, meta.model_name) in VOLATILE:
            continue
        rows = list(model._base_manager.order_by("pk").values_list())
        digests[meta.label] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return digests


def _head() -> int:
    return AuditChainHead.objects.get(id=1).last_seq


def _write_operations(schema: dict) -> list[tuple[str, str]]:
    return [
        (method.upper(), path)
        for path, operations in schema["paths"].items()
        for method in operations
        if method in WRITE_METHODS
    ]


@pytest.mark.django_db
def test_an_auditor_cannot_change_anything(client, client_for):
    world = _world()
    auditor = world["users"]["auditor"]
    api = client_for(auditor)
    schema = api.get("/api/schema/", {"format": "json"}).json()
    operations = _write_operations(schema)
    assert len(operations) > 50, operations
    post, patch = _bodies(world)
    client.force_login(auditor)  # for the page forms; the sign-in is itself recorded
    head, rows = _head(), _snapshot()

    refused, real = {}, set()
    for method, template in operations:
        if (method, template) in AUDITOR_MAY:
            continue
        match = RESOURCE.match(template)
        url = template
        if "{id}" in template:
            object_id = world["ids"].get(match["resource"]) if match else None
            if object_id:
                real.add((method, template))
            url = template.replace("{id}", object_id or str(uuid.uuid4()))
        assert "{" not in url, url
        body = patch if method in ("PUT", "PATCH") else post
        if RUNS.match(template):
            body = {k: v for k, v in post.items() if k not in ("prompt_version", "model_version")}
        response = api.generic(method, url, json.dumps(body), content_type="application/json")
        refused[(method, template)] = response.status_code

    allowed = {op: status for op, status in refused.items() if 200 <= status < 300}
    reads = {op for op in allowed if op in READS}
    assert set(allowed) == reads, f"the auditor wrote: {allowed}"
    creates = {op for op in refused if "{id}" not in op[1]}
    not_forbidden = {
        op: refused[op] for op in (real | creates) - READS - OUT_OF_SCOPE if refused[op] != 403
    }
    assert not not_forbidden, f"refused, but not as 403: {not_forbidden}"
    assert all(refused[op] in (403, 404) for op in refused if op not in reads)

    # The main page forms, signed in.
    head_pages = _head()
    product, cr, sub = world["product"], world["cr"], world["subscription"]
    release, incident, key = world["release"], world["incident"], world["key"]
    forms = {
        "/products/new/": {
            "slug": "auditor-was-here",
            "name": "x",
            "owner_team": post["owner_team"],
        },
        f"/products/{product.pk}/releases/new/": {"version": "9.9.9"},
        f"/releases/{cr.proposed_id}/edit/": {"notes": "Auditor was here."},
        f"/changes/new/?product={product.pk}": {
            "title": "x",
            "rationale": "x",
            "risk": "low",
            "baseline": str(release.pk),
            "proposed": str(cr.proposed_id),
        },
        f"/changes/{cr.pk}/edit/": {"title": "Auditor was here"},
        f"/changes/{cr.pk}/approve/": {"password": settings.DEMO_PASSWORD},
        f"/changes/{cr.pk}/reject/": {"password": settings.DEMO_PASSWORD, "comment": "x"},
        f"/changes/{cr.pk}/comment/": {"note-comment": "Auditor was here."},
        f"/changes/{cr.pk}/withdraw/": {"withdraw-comment": "x"},
        f"/changes/{cr.pk}/implement/": {},
        f"/portal/subscriptions/{sub.pk}/approve/": {},
        f"/portal/subscriptions/{sub.pk}/reject/": {f"reject-{sub.pk}-reason": "x"},
        f"/portal/subscriptions/{sub.pk}/suspend/": {f"suspend-{sub.pk}-reason": "x"},
        f"/products/{product.slug}/incidents/": {"title": "Auditor was here", "severity": "sev3"},
        f"/incidents/{incident.pk}/status/": {"status": "resolved"},
        "/portal/apis/new/": {"product": str(product.pk), "slug": "x", "name": "x"},
        f"/portal/apis/{world['api'].slug}/edit/": {"name": "x"},
        f"/portal/apis/{world['api'].slug}/deprecate/": {},
        f"/portal/apis/{world['api'].slug}/retire/": {},
        f"/portal/apis/{world['api'].slug}/plans/new/": {"slug": "x", "name": "x"},
        "/portal/applications/": {"name": "Auditor app"},
        f"/portal/keys/{key.pk}/revoke/": {},
        f"/portal/keys/{key.pk}/rotate/": {},
        "/prompts/new/": {"slug": "x", "name": "x", "owner_team": post["owner_team"]},
        f"/prompts/{world['ids']['prompts']}/versions/new/": {},
        f"/prompts/versions/{world['ids']['prompt-versions']}/deprecate/": {},
        "/evaluations/suites/new/": {"slug": "x", "name": "x", "owner_team": post["owner_team"]},
        "/evaluations/runs/new/": {"suite": world["ids"]["eval-suites"]},
        "/playground/runs/": {
            "release": str(release.pk),
            "var-company": "Demo Inc.",
            "var-question": "Where is my invoice?",
        },
        "/batches/new/": {},
    }
    pages = {url: client.post(url, data).status_code for url, data in forms.items()}
    not_forbidden = {url: status for url, status in pages.items() if status != 403}
    assert not not_forbidden, f"page forms not refused with a 403: {not_forbidden}"
    # Another user's token is out of scope (404), as in the API.
    assert client.post(f"/tokens/{world['pm_token'].pk}/revoke/").status_code == 404
    # Subscribing is a write too: refused before the form is read (accounts.middleware).
    response = client.post(
        f"/portal/apis/{world['api'].slug}/subscribe/",
        {"application": post["application"], "plan": post["plan"], "justification": "x"},
    )
    assert response.status_code == 403

    # Nothing changed, and the refusals recorded nothing.
    recorded = list(AuditEvent.objects.filter(seq__gt=head).values_list("verb", "object_type"))
    assert _head() == head_pages == head, recorded
    assert _snapshot() == rows

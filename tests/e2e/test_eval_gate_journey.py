"""The evaluation gate in the browser, with real runs on a real Celery worker.

The product manager submits a change request whose approval policy gates on an evaluation
suite; the runs of the baseline and the proposed release progress on the change-request page;
the reviewer sees old vs new side by side, with the one case that regressed highlighted, and
the approve button disabled with the reason. A second test (no browser) goes through the same
pipeline with a change that regresses nothing: the gate passes, approve is enabled and the
approval records the runs it relied on.

The product's prompt sends the question as the user message (1.0.0: ``{{ question }}``) and the
built-in provider echoes it; 1.1.0 prefixes the question (``Customer question: ...``), so the
case ``greets-back``, which checks that the answer starts with the greeting, passes on 1.0.0 and
fails on 1.1.0, while the other cases pass on both.
"""

import re
import time

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from apps.accounts.roles import ADMIN
from apps.catalog import services as catalog
from apps.changes import services as changes
from apps.changes.models import ChangeRequest
from apps.evaluations.models import EvalRun, RunState
from apps.evaluations.services import suite_create, suite_version_create
from apps.releases.services import release_create, release_freeze, release_release
from tests.factories import PASSWORD, PromptTemplate, TeamFactory, member, model_version, product
from tests.factories import artifact as make_artifact
from tests.playground.factories import builtin

from .test_change_journey import sign_in, sign_out

SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}}, "required": []}
SYSTEM = "You are the support assistant of Acme. Be concise."
CASES = [
    {
        "key": "refund",
        "variables": {"question": "How do I get a refund?"},
        "assertions": [{"type": "contains", "value": "refund"}],
    },
    {
        "key": "invoice",
        "variables": {"question": "Where is my invoice?"},
        "assertions": [{"type": "contains", "value": "invoice"}],
    },
    {
        "key": "greets-back",
        "variables": {"question": "Hello there"},
        "assertions": [{"type": "regex", "pattern": r"^\[builtin\] Hello"}],
    },
    {
        "key": "password",
        "variables": {"question": "I forgot my password"},
        "assertions": [{"type": "icontains", "value": "password"}],
    },
    {
        "key": "opening-hours",
        "variables": {"question": "When are you open?"},
        "assertions": [{"type": "contains", "value": "open"}],
    },
    {
        "key": "shipping",
        "variables": {"question": "How long does shipping take?"},
        "assertions": [{"type": "contains", "value": "shipping"}],
    },
]
RUN_TIMEOUT = 90  # seconds for both runs on the worker


def _organisation(*, user_message: str, latency_ms: int):
    """Team acme: priya (product manager), rene (reviewer), an admin; the built-in provider
    (answering after ``latency_ms``); support-assistant with 1.0.0 released and a draft 1.1.0
    whose prompt sends ``user_message``; a suite of the team and a policy gating on it."""
    team = TeamFactory(slug="acme", name="Acme Support")
    pm = member("product_manager", team, username="priya", display_name="Priya Manager")
    member("reviewer", team, username="rene", display_name="René Reviewer")
    admin = member(ADMIN, team, username="ada")
    builtin(latency_ms=latency_ms)
    prod = product(pm, team, slug="support-assistant", name="Support Assistant")
    prompt = make_artifact(pm, PromptTemplate, team, slug="support-answer", name="Support answer")
    v1, v2 = (
        catalog.prompt_version_create(
            actor=pm,
            prompt=prompt,
            messages=[{"role": "system", "content": system}, {"role": "user", "content": text}],
            variables_schema=SCHEMA,
        )
        for system, text in ((SYSTEM, "{{ question }}"), (f"{SYSTEM} Be friendly.", user_message))
    )
    mv = model_version(pm, team, "echo-1")
    first = release_create(
        actor=pm, product=prod, version="1.0.0", prompt_version=v1, model_version=mv
    )
    release_release(actor=pm, release=release_freeze(actor=pm, release=first))
    draft = release_create(
        actor=pm, product=prod, version="1.1.0", prompt_version=v2, model_version=mv
    )
    suite = suite_create(
        actor=pm, owner_team=team, slug="support-faq", name="Support FAQ", description=""
    )
    suite_version_create(actor=pm, suite=suite, cases=CASES)
    changes.approval_policy_set(
        actor=admin,
        product=prod,
        stage=prod.stage,
        required_roles=[{"role": "reviewer", "quorum": 1}],
        evaluation_gate={"suite": str(suite.pk), "min_pass_rate": 0.8, "no_regressions": True},
    )
    return {"pm": pm, "product": prod, "draft": draft}


def _wait_for_runs(cr, timeout=RUN_TIMEOUT) -> list[EvalRun]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = list(EvalRun.objects.filter(change_request=cr))
        if runs and all(r.is_finished for r in runs):
            return runs
        time.sleep(0.3)
    return list(EvalRun.objects.filter(change_request=cr))


@pytest.mark.e2e
@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_eval_gate_journey(page, live_server, artifacts_dir, celery_worker, settings):
    settings.EVALUATIONS_TASK_QUEUE = celery_worker.queue
    org = _organisation(user_message="Customer question: {{ question }}", latency_ms=600)
    prod, draft = org["product"], org["draft"]

    # The product manager files the change request and submits it.
    sign_in(page, "priya")
    page.goto(f"/changes/new/?product={prod.pk}&proposed={draft.pk}")
    page.fill("#id_title", "Frame the customer's question")
    page.fill("#id_rationale", "The model answers better when it knows who is asking.")
    page.get_by_role("button", name="Create change request").click()
    expect(page.locator(".messages .alert-success")).to_contain_text("Change request drafted")
    gate = page.locator("#evaluation-gate")
    expect(gate).to_have_attribute("data-gate-state", "not_started")
    expect(gate).to_contain_text("runs start when the change is submitted")
    page.get_by_role("button", name="Submit for review").click()
    expect(page.locator(".messages .alert-success")).to_contain_text("Submitted for review")
    cr = ChangeRequest.objects.get(title="Frame the customer's question")
    # Record what each refresh of the gate's section shows (state, the proposed run's counts).
    page.evaluate(
        """() => {
            window.__seen = [];
            document.body.addEventListener('htmx:afterSwap', () => {
                const gate = document.querySelector('#evaluation-gate');
                const counts = document.querySelector(
                    '#evaluation-gate [data-run-role="proposed"] [data-run-counts]');
                window.__seen.push([gate && gate.dataset.gateState, counts && counts.textContent]);
            });
        }"""
    )

    # The runs progress on the page (htmx polls the gate's section) until the gate decides.
    expect(gate).to_have_attribute("data-gate-state", "pending")
    expect(gate.locator('[data-run-role="baseline"] progress')).to_have_count(1)
    expect(gate.locator('[data-run-role="proposed"] progress')).to_have_count(1)
    expect(gate.locator('[data-check="runs"]')).to_have_attribute("data-check-state", "pending")
    page.screenshot(path=artifacts_dir / "eval-gate-running.png", full_page=True)
    expect(gate).to_have_attribute("data-gate-state", "failed", timeout=RUN_TIMEOUT * 1000)
    seen = page.evaluate("() => window.__seen")
    assert seen, "the gate's section was never refreshed in place"
    assert seen[-1][0] == "failed", seen  # reached by polling, without reloading the page
    runs = {r.cr_role: r for r in EvalRun.objects.filter(change_request=cr)}
    assert runs["baseline"].state == runs["proposed"].state == RunState.SUCCEEDED, (
        celery_worker.output()[-3000:]
    )
    assert (runs["baseline"].passed, runs["proposed"].passed) == (6, 5)
    expect(gate.locator('[data-run-role="proposed"] [data-run-counts]')).to_contain_text("6/6")
    sign_out(page, live_server)

    # The reviewer opens it from their queue: old vs new side by side, the regression marked.
    sign_in(page, "rene")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.locator("[data-nav-queue]")).to_have_text("1")
    nav.get_by_role("link", name=re.compile(r"^Changes")).click()
    page.get_by_role("link", name="Frame the customer's question").first.click()
    gate = page.locator("#evaluation-gate")
    expect(gate).to_have_attribute("data-gate-state", "failed")
    expect(gate.locator('[data-check="no_regressions"]')).to_have_attribute(
        "data-check-state", "failed"
    )
    expect(gate.locator('[data-check="no_regressions"]')).to_contain_text(
        "1 case regressed: greets-back"
    )
    regressed = gate.locator('tr.case-row[data-change="regressed"]')
    expect(regressed).to_have_count(1)
    expect(regressed).to_have_attribute("data-case", "greets-back")
    expect(regressed.locator('td[data-side="a"]')).to_have_attribute("data-outcome", "pass")
    expect(regressed.locator('td[data-side="a"] pre')).to_have_text("[builtin] Hello there")
    expect(regressed.locator('td[data-side="b"]')).to_have_attribute("data-outcome", "fail")
    expect(regressed.locator('td[data-side="b"] pre')).to_have_text(
        "[builtin] Customer question: Hello there"
    )
    assert regressed.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 241, 240)"
    expect(gate.locator('tr.case-row[data-change="unchanged"]')).to_have_count(5)
    expect(gate.locator('[data-metric="pass_rate"] [data-delta]')).to_have_text("-16.7 pts")
    approve = page.locator("[data-approve]")
    expect(approve).to_be_disabled()
    expect(page.locator("[data-approve-blocked]")).to_contain_text(
        "The evaluation gate failed: 1 case regressed: greets-back"
    )
    expect(page.get_by_role("button", name="Reject")).to_be_enabled()
    page.screenshot(path=artifacts_dir / "eval-gate-regression.png", full_page=True)

    # The comparison page has every case, both outputs, and links back to the change.
    gate.locator("[data-compare-link]").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Compare runs")
    expect(page.locator('tr.case-row[data-change="regressed"]')).to_have_attribute(
        "data-case", "greets-back"
    )
    page.get_by_role("link", name="regressed (1)").click()
    expect(page.locator("tr.case-row")).to_have_count(1)
    expect(page.locator("[data-change-request]")).to_have_text("Frame the customer's question")
    page.screenshot(path=artifacts_dir / "eval-compare.png", full_page=True)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_change_that_regresses_nothing_passes_the_gate(client, celery_worker, settings):
    """GIVEN the same product, with a 1.1.0 that sends the question unchanged
    WHEN its change request is submitted and the worker runs both releases
    THEN the gate passes, the reviewer's approve button is enabled, and the approval records
    the two runs it relied on."""
    settings.EVALUATIONS_TASK_QUEUE = celery_worker.queue
    org = _organisation(user_message="{{ question }}", latency_ms=0)
    pm, prod, draft = org["pm"], org["product"], org["draft"]
    cr = changes.change_request_create(
        actor=pm, product=prod, title="Same question", rationale="Tone only.", proposed=draft
    )
    cr = changes.change_request_submit(actor=pm, cr=cr)
    runs = _wait_for_runs(cr)
    assert len(runs) == 2 and all(r.state == RunState.SUCCEEDED for r in runs), (
        [(r.cr_role, r.state, r.error) for r in runs],
        celery_worker.output()[-3000:],
    )
    reviewer = member("reviewer", prod.owner_team)
    client.force_login(reviewer)
    html = client.get(reverse("change_detail", args=[cr.pk])).content.decode()
    assert 'data-gate-state="passed"' in html
    assert "data-approve>" in html and "data-approve-blocked" not in html
    response = client.post(
        reverse("change_approve", args=[cr.pk]), {"password": PASSWORD, "comment": "Green."}
    )
    assert response.status_code == 302
    cr.refresh_from_db()
    assert cr.state == "approved"
    evidence = cr.approvals.get().evidence["evaluation"]
    by_role = {r.cr_role: str(r.pk) for r in runs}
    assert (evidence["baseline_run"], evidence["proposed_run"]) == (
        by_role["baseline"],
        by_role["proposed"],
    )
    assert evidence["gate"]["pass_rate"] == 1.0
    assert changes.change_request_implement(actor=pm, cr=cr).state == "implemented"

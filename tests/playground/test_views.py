"""The playground and batch pages: htmx partials, form errors, permissions, query counts."""

import json
import re

import pytest
from django.test import Client
from django.urls import reverse

from apps.accounts.roles import AUDITOR, REVIEWER
from apps.playground import services
from apps.playground.models import BatchRun, PlaygroundRun
from apps.playground.tasks import run_batch_chunk, run_playground

from ..factories import member
from .factories import builtin, dataset_version, pm, runnable_release

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def owner():
    return pm()


@pytest.fixture
def team(owner):
    return owner.memberships.first().team


@pytest.fixture
def rel(owner):
    builtin()
    return runnable_release(owner)


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


def _text(response) -> str:
    return response.content.decode()


# --- the playground ---------------------------------------------------------------------------


def test_the_playground_page_lists_targets_and_has_an_empty_state(browser, rel):
    response = browser.get(reverse("playground"))
    assert response.status_code == 200
    html = _text(response)
    assert f'value="{rel.pk}"' in html
    assert "No runs yet" in html
    assert "data-variables-empty" in html
    assert f'hx-get="{reverse("playground_variables")}"' in html


def test_picking_a_release_swaps_in_its_variables_form(browser, rel):
    response = browser.get(reverse("playground_variables"), {"release": rel.pk}, **HTMX)
    assert response.status_code == 200
    html = _text(response)
    assert 'name="var-company"' in html and 'type="text"' in html
    assert '<textarea name="var-question"' in html
    assert "The customer&#x27;s question." in html  # the description as help
    assert "required-mark" in html  # question is required
    by_prompt = browser.get(
        reverse("playground_variables"), {"prompt_version": rel.prompt_version_id}, **HTMX
    )
    assert 'name="var-question"' in _text(by_prompt)
    assert "data-variables-empty" in _text(browser.get(reverse("playground_variables"), **HTMX))


def test_another_teams_release_is_a_404(client, rel):
    client.force_login(pm())
    assert client.get(reverse("playground_variables"), {"release": rel.pk}).status_code == 404
    assert client.get(reverse("playground"), {"release": rel.pk}).status_code == 404
    assert client.get(reverse("playground_variables"), {"release": "nope"}).status_code == 404
    response = client.post(
        reverse("playground_run_create"), {"release": rel.pk, "var-question": "x"}, **HTMX
    )
    assert "Select a valid choice" in _text(response)
    assert PlaygroundRun.objects.count() == 0


def test_a_run_end_to_end_shows_answer_tokens_cost_latency_and_prompt(
    browser, rel, django_capture_on_commit_callbacks
):
    """GIVEN the playground WHEN a release is run with variables (htmx)
    THEN the workspace comes back with a result panel polling every second, and once the worker
    is done the panel shows the answer, tokens, cost, latency and each rendered message."""
    with django_capture_on_commit_callbacks() as queued:
        response = browser.post(
            reverse("playground_run_create"),
            {"release": rel.pk, "var-company": "Acme", "var-question": "Where is it?"},
            **HTMX,
        )
    assert response.status_code == 200, _text(response)
    assert len(queued) == 1  # the task is enqueued once the run is committed
    run = PlaygroundRun.objects.get()
    html = _text(response)
    assert 'id="workspace"' in html
    assert f'hx-get="{reverse("playground_run_detail", args=[run.pk])}"' in html
    assert 'hx-trigger="every 1s"' in html
    assert "Queued" in html
    run_playground(str(run.pk))
    polled = browser.get(reverse("playground_run_detail", args=[run.pk]), **HTMX)
    assert polled["HX-Trigger"] == "playground-run-done"
    html = _text(polled)
    assert "every 1s" not in html  # done: the polling stops
    assert "[builtin] Where is it?" in html
    run.refresh_from_db()
    assert re.search(rf"data-tokens-in>{run.tokens_in}<", html)
    assert re.search(rf"data-tokens-out>{run.tokens_out}<", html)
    assert f"data-cost>{run.cost}<" in html
    assert f"{run.latency_ms} ms" in html
    assert '<div class="role">system</div><pre>You answer for Acme.</pre>' in html
    assert '<div class="role">user</div><pre>Where is it?</pre>' in html
    # The run's own page, and the recent runs list.
    page = browser.get(reverse("playground_run_detail", args=[run.pk]))
    assert "[builtin] Where is it?" in _text(page) and "Run again" in _text(page)
    recent = browser.get(reverse("playground"), {"part": "recent"}, **HTMX)
    assert f'data-run-row="{run.pk}"' in _text(recent)


def test_without_htmx_a_run_redirects_to_its_page(browser, rel):
    response = browser.post(
        reverse("playground_run_create"), {"release": rel.pk, "var-question": "x"}
    )
    run = PlaygroundRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("playground_run_detail", args=[run.pk])


def test_bad_variables_are_a_form_error_and_no_run(browser, rel):
    response = browser.post(
        reverse("playground_run_create"), {"release": rel.pk, "var-question": ""}, **HTMX
    )
    assert response.status_code == 200
    assert "This field is required." in _text(response)
    response = browser.post(
        reverse("playground_run_create"),
        {"release": rel.pk, "var-question": "x", "var-company": "y" * 81},
        **HTMX,
    )
    assert "at most 80 characters" in _text(response)
    assert PlaygroundRun.objects.count() == 0


def test_the_schema_check_of_the_service_shows_on_the_field(browser, owner, team):
    """A rule the form does not know (a pattern) is the service's: its message lands on the
    variable's field."""
    from .factories import prompt_version

    builtin()
    pv = prompt_version(
        owner,
        team,
        schema={
            "type": "object",
            "properties": {"question": {"type": "string", "pattern": "^[A-Z]"}},
            "required": ["question"],
        },
        messages=[{"role": "user", "content": "{{ question }}"}],
    )
    rel = runnable_release(owner, prompt_version=pv)
    response = browser.post(
        reverse("playground_run_create"), {"release": rel.pk, "var-question": "lower"}, **HTMX
    )
    html = _text(response)
    assert "does not match" in html and "Variables do not match" in html
    assert PlaygroundRun.objects.count() == 0


def test_picking_nothing_or_both_is_a_form_error(browser, rel):
    html = _text(browser.post(reverse("playground_run_create"), {}, **HTMX))
    assert "Pick a prompt version (or a release above)." in html
    html = _text(
        browser.post(
            reverse("playground_run_create"),
            {"release": rel.pk, "prompt_version": rel.prompt_version_id},
            **HTMX,
        )
    )
    assert "not both" in html


def test_an_auditor_reads_but_cannot_run(client, rel, team):
    auditor = member(AUDITOR, team)
    client.force_login(auditor)
    page = client.get(reverse("playground"))
    assert "data-cannot-run" in _text(page) and 'id="playground-form"' not in _text(page)
    response = client.post(
        reverse("playground_run_create"), {"release": rel.pk, "var-question": "x"}, **HTMX
    )
    assert response.status_code == 403
    assert PlaygroundRun.objects.count() == 0
    assert client.get(reverse("batch_create")).status_code == 403


def test_the_playground_page_costs_a_fixed_number_of_queries(
    browser, owner, rel, django_assert_num_queries
):
    """GIVEN 3 and then 12 recent runs WHEN the playground page is read THEN the same queries."""
    for _ in range(3):
        services.playground_run_create(actor=owner, release=rel, variables={"question": "x"})
    browser.get(reverse("playground"))
    with django_assert_num_queries(PLAYGROUND_QUERIES):
        assert browser.get(reverse("playground")).status_code == 200
    for _ in range(9):
        run = services.playground_run_create(actor=owner, release=rel, variables={"question": "x"})
    run_playground(str(run.pk))
    runnable_release(owner, version="2.0.0")
    with django_assert_num_queries(PLAYGROUND_QUERIES):
        response = browser.get(reverse("playground"))
    assert "1\N{EN DASH}10 of 12" in _text(response)


PLAYGROUND_QUERIES = 11


def test_run_again_prefills_the_target_and_variables(browser, owner, rel):
    run = services.playground_run_create(
        actor=owner, release=rel, variables={"question": "Again?", "company": "Co"}
    )
    html = _text(browser.get(reverse("playground"), {"from": run.pk}))
    assert f'<option value="{rel.pk}" selected>' in html
    assert "Again?</textarea>" in html and 'value="Co"' in html


# --- batches ----------------------------------------------------------------------------------


def test_the_batch_pages_from_empty_to_done(
    browser, owner, rel, django_capture_on_commit_callbacks
):
    assert "No batch runs yet" in _text(browser.get(reverse("batch_list")))
    form = browser.get(reverse("batch_create"))
    assert "No dataset to run over" in _text(form)
    dv = dataset_version(owner, [{"question": "a"}, {"question": ""}, {"question": "c"}])
    form = browser.get(reverse("batch_create"), {"release": rel.pk})
    html = _text(form)
    assert f'value="{dv.pk}"' in html and 'name="var-question"' in html
    assert "Variables for every row" in html
    with django_capture_on_commit_callbacks() as queued:
        response = browser.post(
            reverse("batch_create"),
            {"release": rel.pk, "dataset_version": dv.pk, "concurrency": 2, "var-company": "Acme"},
        )
    batch = BatchRun.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "batch_detail", args=[batch.pk]
    )
    assert len(queued) == 1
    assert (batch.concurrency, batch.variables, batch.total) == (2, {"company": "Acme"}, 3)
    page = _text(browser.get(reverse("batch_detail", args=[batch.pk])))
    assert '<progress max="3" value="0"' in page
    assert 'hx-trigger="every 1s"' in page and "data-cancel" in page
    run_batch_chunk(str(batch.pk), 0)
    live = browser.get(reverse("batch_detail", args=[batch.pk]), {"part": "live"}, **HTMX)
    html = _text(live)
    assert 'class="batch-live"' in html and "<html" not in html
    assert '<progress max="3" value="3"' in html
    assert "2 succeeded" in html and "1 failed" in html
    assert "every 1s" not in html and "data-cancel" not in html  # done
    assert 'data-item-state="failed"' in html and "should be non-empty" in html
    assert f'data-batch-row="{batch.pk}"' in _text(browser.get(reverse("batch_list")))
    failed_only = browser.get(
        reverse("batch_detail", args=[batch.pk]),
        {"state": "failed"},
        HTTP_HX_TARGET="batch-live",
        **HTMX,
    )
    assert _text(failed_only).count("data-item=") == 1
    download = browser.get(reverse("batch_results", args=[batch.pk]))
    assert download["Content-Type"] == "application/jsonl; charset=utf-8"
    assert "attachment" in download["Content-Disposition"]
    lines = [json.loads(line) for line in b"".join(download.streaming_content).splitlines()]
    assert [(r["index"], r["state"]) for r in lines] == [
        (0, "succeeded"),
        (1, "failed"),
        (2, "succeeded"),
    ]


def test_a_batch_form_error_is_shown_not_a_500(browser, owner, rel, settings):
    settings.PLAYGROUND_BATCH_MAX_ROWS = 1
    dv = dataset_version(owner, [{"question": "a"}, {"question": "b"}])
    response = browser.post(
        reverse("batch_create"), {"release": rel.pk, "dataset_version": dv.pk, "concurrency": 4}
    )
    assert response.status_code == 200
    assert "a batch runs at most 1" in _text(response)
    response = browser.post(
        reverse("batch_create"), {"release": rel.pk, "dataset_version": dv.pk, "concurrency": 40}
    )
    assert "less than or equal to 16" in _text(response)
    assert BatchRun.objects.count() == 0


def test_cancel_from_the_page(browser, owner, rel, team):
    dv = dataset_version(owner, [{"question": "a"}])
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv)
    reviewer = member(REVIEWER, team)
    other = Client()
    other.force_login(reviewer)
    assert other.post(reverse("batch_cancel", args=[batch.pk])).status_code == 403
    response = browser.post(reverse("batch_cancel", args=[batch.pk]), follow=True)
    assert "Batch cancelled: 1 row(s) will not be run." in _text(response)
    batch.refresh_from_db()
    assert batch.state == "cancelled"
    again = browser.post(reverse("batch_cancel", args=[batch.pk]), follow=True)
    assert "it cannot become cancelled" in _text(again)


def test_out_of_scope_batches_and_runs_are_404(client, owner, rel):
    dv = dataset_version(owner, [{"question": "a"}])
    batch = services.batch_run_create(actor=owner, release=rel, dataset_version=dv)
    run = services.playground_run_create(actor=owner, release=rel, variables={"question": "x"})
    client.force_login(pm())
    for url in (
        reverse("batch_detail", args=[batch.pk]),
        reverse("batch_results", args=[batch.pk]),
        reverse("playground_run_detail", args=[run.pk]),
    ):
        assert client.get(url).status_code == 404, url
    assert client.post(reverse("batch_cancel", args=[batch.pk])).status_code == 404


def test_the_batch_detail_page_costs_a_fixed_number_of_queries(
    browser, owner, rel, django_assert_num_queries
):
    """GIVEN a batch of 3 rows and then one of 40 WHEN its page is read THEN the same queries
    (one page of rows)."""
    small = services.batch_run_create(
        actor=owner, release=rel, dataset_version=dataset_version(owner, [{"question": "a"}] * 3)
    )
    big = services.batch_run_create(
        actor=owner, release=rel, dataset_version=dataset_version(owner, [{"question": "b"}] * 40)
    )
    run_batch_chunk(str(big.pk), 0)
    browser.get(reverse("batch_detail", args=[small.pk]))
    for batch in (small, big):
        with django_assert_num_queries(BATCH_DETAIL_QUERIES):
            response = browser.get(reverse("batch_detail", args=[batch.pk]))
        assert response.status_code == 200
    assert "1\N{EN DASH}25 of 40" in _text(response)
    with django_assert_num_queries(BATCH_LIVE_QUERIES):
        browser.get(reverse("batch_detail", args=[big.pk]), {"part": "live"}, **HTMX)


BATCH_DETAIL_QUERIES = 9
BATCH_LIVE_QUERIES = 8

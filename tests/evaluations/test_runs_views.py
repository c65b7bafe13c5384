"""The evaluation-run pages: the list, the new-run form, a run's live region and figures,
cancel, permissions, exact query counts."""

import re

import pytest
from django.urls import reverse

from apps.accounts.roles import AUDITOR, DEVELOPER, REVIEWER
from apps.evaluations import runs
from apps.evaluations.models import EvalRun

from ..factories import member
from .factories import case_dict, suite_with_cases
from .run_helpers import drain, failing_case, pm, runnable, started

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
    return runnable(owner)


@pytest.fixture
def browser(client, owner):
    client.force_login(owner)
    return client


def _text(response) -> str:
    return response.content.decode()


def _detail(run) -> str:
    return reverse("eval_run_detail", args=[run.pk])


# --- the list ------------------------------------------------------------------------------------


def test_the_list_shows_runs_in_scope_with_filters_and_an_empty_state(browser, owner, rel):
    assert "No evaluation runs yet" in _text(browser.get(reverse("eval_run_list")))
    mine = started(owner, rel)
    theirs = started(pm())
    html = _text(browser.get(reverse("eval_run_list")))
    assert f'data-run-row="{mine.pk}"' in html and str(theirs.pk) not in html
    assert reverse("eval_run_create") in html
    cancelled = started(owner, rel)
    runs.eval_run_cancel(actor=owner, run=cancelled)
    partial = _text(browser.get(reverse("eval_run_list"), {"state": "cancelled"}, **HTMX))
    assert "<html" not in partial
    assert f'data-run-row="{cancelled.pk}"' in partial and str(mine.pk) not in partial
    by_suite = _text(
        browser.get(reverse("eval_run_list"), {"suite": str(mine.suite_version.suite_id)})
    )
    assert str(mine.pk) in by_suite and str(cancelled.pk) not in by_suite
    assert "No matching runs" in _text(
        browser.get(reverse("eval_run_list"), {"release": str(theirs.release_id)})
    )


def test_the_list_costs_a_fixed_number_of_queries(browser, owner, rel, django_assert_num_queries):
    for _ in range(3):
        started(owner, rel)
    browser.get(reverse("eval_run_list"))
    with django_assert_num_queries(LIST_QUERIES):
        assert browser.get(reverse("eval_run_list")).status_code == 200
    for _ in range(10):
        started(owner, rel)
    with django_assert_num_queries(LIST_QUERIES):
        response = browser.get(reverse("eval_run_list"))
    assert _text(response).count("data-run-row=") == 13


LIST_QUERIES = 8  # session, user, 2 of has_perm, memberships, count, page, nav queue


# --- a new run -----------------------------------------------------------------------------------


def test_the_form_starts_a_run_of_a_suites_latest_version(browser, owner, rel, team):
    version = suite_with_cases(owner, team)
    page = _text(browser.get(reverse("eval_run_create"), {"suite": str(version.suite_id)}))
    assert f'<option value="{version.suite_id}" selected>' in page
    assert f'value="{rel.pk}"' in page
    response = browser.post(
        reverse("eval_run_create"),
        {"suite": str(version.suite_id), "release": str(rel.pk), "concurrency": "3"},
    )
    run = EvalRun.objects.get()
    assert response.status_code == 302 and response["Location"] == _detail(run)
    assert (run.suite_version, run.release, run.concurrency, run.state) == (
        version,
        rel,
        3,
        "queued",
    )


def test_the_form_shows_what_is_wrong(browser, owner, rel, team):
    version = suite_with_cases(owner, team)
    neither = browser.post(reverse("eval_run_create"), {"release": str(rel.pk), "concurrency": "4"})
    assert neither.status_code == 200 and "Pick the suite to run" in _text(neither)
    both = browser.post(
        reverse("eval_run_create"),
        {
            "suite_version": str(version.pk),
            "release": str(rel.pk),
            "prompt_version": str(rel.prompt_version_id),
            "concurrency": "4",
        },
    )
    assert "not both" in _text(both)
    too_many = browser.post(
        reverse("eval_run_create"),
        {"suite_version": str(version.pk), "release": str(rel.pk), "concurrency": "99"},
    )
    assert too_many.status_code == 200 and "concurrency" in _text(too_many).lower()
    assert EvalRun.objects.count() == 0


def test_the_form_is_for_those_who_may_start_runs(client, team, rel):
    for role, status in ((DEVELOPER, 403), (AUDITOR, 403), (REVIEWER, 200)):
        client.force_login(member(role, team))
        assert client.get(reverse("eval_run_create")).status_code == status, role


def test_the_form_without_a_suite_says_so(browser, rel):
    assert "No suite to run" in _text(browser.get(reverse("eval_run_create")))


# --- a run ---------------------------------------------------------------------------------------


def test_a_running_run_polls_every_second_and_stops_when_finished(browser, owner, rel):
    run = started(owner, rel, cases=[case_dict("a"), failing_case("b")])
    html = _text(browser.get(_detail(run)))
    assert 'hx-trigger="every 1s"' in html and 'id="run-live"' in html
    assert "data-cancel" in html and "Waiting for a worker" in html
    assert run.suite_version.content_hash[:12] in html and run.release_fingerprint[:12] in html
    live = _text(browser.get(_detail(run), {"part": "live"}, **HTMX))
    assert "<html" not in live and 'hx-trigger="every 1s"' in live
    assert '<progress max="2" value="0"' in live
    drain(run)
    done = _text(browser.get(_detail(run), {"part": "live"}, **HTMX))
    assert "hx-trigger" not in done and "data-cancel" not in done
    assert '<progress max="2" value="2"' in done
    assert re.search(r"<strong>2</strong> of 2 cases", done)
    assert "data-pass-rate>50%" in done
    assert 'data-assertion="contains"' in done
    assert 'data-result="b" data-outcome="fail"' in done
    assert "nowhere-to-be-seen" in done  # the failed check's detail
    only_failed = _text(browser.get(_detail(run), {"part": "live", "outcome": "fail"}, **HTMX))
    assert 'data-result="b"' in only_failed and 'data-result="a"' not in only_failed


def test_a_run_shows_the_gap_of_a_group_varying_a_value(browser, owner, rel):
    def named(key, name):
        return case_dict(
            key,
            variables={"q": f"hi {name}", "name": name},
            assertions=[{"type": "contains", "value": "Aisha"}],
            group="names",
            vary="name",
        )

    run = started(owner, rel, cases=[named("a", "Aisha"), named("j", "John")])
    drain(run)
    html = _text(browser.get(_detail(run)))
    assert 'data-group="names" data-gap="100"' in html and "gap 100 points" in html
    assert "Aisha" in html and "John" in html


def test_a_failed_run_says_why(browser, owner, team):
    from ..factories import release

    run = started(owner, release(owner))  # no provider "builtin"
    drain(run)
    html = _text(browser.get(_detail(run)))
    assert "data-run-error" in html and "does not exist" in html


def test_cancel_from_the_page(browser, client, owner, rel, team):
    run = started(owner, rel)
    client.force_login(member(DEVELOPER, team))
    assert "data-cancel" not in _text(client.get(_detail(run)))
    assert client.post(reverse("eval_run_cancel", args=[run.pk])).status_code == 403
    browser.force_login(owner)
    response = browser.post(reverse("eval_run_cancel", args=[run.pk]), follow=True)
    assert "Run cancelled" in _text(response)
    run.refresh_from_db()
    assert run.state == "cancelled"
    again = browser.post(reverse("eval_run_cancel", args=[run.pk]), follow=True)
    assert "only a queued or running run can be cancelled" in _text(again)


def test_a_run_outside_ones_teams_is_a_404(client, owner, rel):
    run = started(owner, rel)
    client.force_login(pm())
    assert client.get(_detail(run)).status_code == 404
    assert client.post(reverse("eval_run_cancel", args=[run.pk])).status_code == 404
    client.force_login(member(AUDITOR))
    assert client.get(_detail(run)).status_code == 200  # auditors read every run


def test_the_run_page_costs_a_fixed_number_of_queries(
    browser, owner, rel, django_assert_num_queries
):
    """GIVEN a finished run of 3 results and then one of 40 WHEN its page (and its live region)
    is read THEN the same queries (one page of results)."""
    small = started(owner, rel, cases=[case_dict(f"s{i}") for i in range(3)])
    big = started(owner, rel, cases=[case_dict(f"b{i}") for i in range(39)] + [failing_case("z")])
    drain(small)
    drain(big)
    browser.get(_detail(small))
    for run in (small, big):
        with django_assert_num_queries(DETAIL_QUERIES):
            assert browser.get(_detail(run)).status_code == 200
        with django_assert_num_queries(LIVE_QUERIES):
            assert browser.get(_detail(run), {"part": "live"}, **HTMX).status_code == 200


DETAIL_QUERIES = 9  # session, user, 2 of has_perm, memberships, run, count, nav queue, page
LIVE_QUERIES = 8  # the same but the nav queue (no layout)

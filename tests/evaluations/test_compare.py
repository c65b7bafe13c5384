"""Two runs side by side: the comparison's math, its page and its API."""

from decimal import Decimal

import pytest
from django.urls import reverse

from apps.evaluations.comparison import compare_runs, comparison_dict
from apps.evaluations.models import EvalResult, RunState
from apps.evaluations.services import suite_version_create
from tests.changes.helpers import proposal, released
from tests.evaluations.factories import case_dict, suite_with_cases
from tests.evaluations.gate_helpers import finish, make_run
from tests.factories import member

pytestmark = pytest.mark.django_db

URL = "/api/v1/eval-comparisons/"


@pytest.fixture
def pm():
    return member("product_manager")


@pytest.fixture
def pair(pm):
    """A baseline and a proposed release of one product, and a suite of four cases."""
    baseline = released(pm)
    proposed = proposal(pm, baseline)
    sv = suite_with_cases(pm, cases=[case_dict(k) for k in ("a", "b", "c", "d")])
    return baseline, proposed, sv


def _runs(pm, pair, outcomes_a, outcomes_b, **kw):
    baseline, proposed, sv = pair
    a = finish(make_run(pm, sv, baseline), outcomes_a, **kw.get("a", {}))
    b = finish(make_run(pm, sv, proposed), outcomes_b, **kw.get("b", {}))
    return a, b


# --- the math ------------------------------------------------------------------------------------


def test_per_case_changes_and_counts(pm, pair):
    """GIVEN a: a pass, b fail, c pass, d error; b: a fail, b pass, c pass, d error
    THEN a regressed, b improved, c and d unchanged (pass/pass, not-pass/not-pass)."""
    a, b = _runs(pm, pair, {"b": "fail", "d": "error"}, {"a": "fail", "d": "error"})
    comparison = compare_runs(a, b)
    assert [(r.key, r.change) for r in comparison.rows] == [
        ("a", "regressed"),
        ("b", "improved"),
        ("c", "unchanged"),
        ("d", "unchanged"),
    ]
    assert comparison.counts == {
        "regressed": 1,
        "improved": 1,
        "unchanged": 2,
        "new": 0,
        "missing": 0,
        "pending": 0,
    }
    assert [r.key for r in comparison.regressed] == ["a"]
    assert [r.key for r in comparison.by_change()] == ["a", "b", "c", "d"]
    assert comparison.finished
    # the error result is an error on both sides; an error counts as not passed (a→error regresses)
    a2, b2 = _runs(pm, pair, {}, {"c": "error"})
    assert [r.key for r in compare_runs(a2, b2).regressed] == ["c"]


def test_metric_deltas(pm, pair):
    """Pass rate, counts, latency percentiles, tokens and cost per side, with direction."""
    a, b = _runs(
        pm,
        pair,
        {"d": "fail"},
        {"c": "fail", "d": "fail"},
        a={"cost": "0.001", "latency_ms": 100, "tokens": (10, 5)},
        b={"cost": "0.0015", "latency_ms": 300, "tokens": (12, 5)},
    )
    comparison = compare_runs(a, b)
    m = {metric.key: metric for metric in comparison.metrics}
    assert (m["pass_rate"].a, m["pass_rate"].b) == (0.75, 0.5)
    assert m["pass_rate"].delta == pytest.approx(-0.25)
    assert m["pass_rate"].better == "worse"
    assert m["pass_rate"].delta_display == "-25.0 pts"
    assert (m["passed"].a, m["passed"].b, m["passed"].delta) == (3, 2, -1)
    assert (m["latency_p50"].a, m["latency_p50"].b) == (100, 300)
    assert m["latency_p95"].better == "worse"
    assert m["latency_p50"].relative == pytest.approx(2.0)
    assert (m["tokens_in"].a, m["tokens_in"].b) == (40, 48)
    assert m["tokens_in"].better is None  # no direction for tokens
    assert (m["cost"].a, m["cost"].b) == (Decimal("0.004"), Decimal("0.006"))
    assert m["cost"].relative == pytest.approx(0.5)
    assert m["cost"].delta_display == "+0.002 (+50%)"
    assert m["errored"].better == "same"
    # per assertion: "contains" held 3/4 then 2/4
    (contains,) = comparison.assertions
    assert (contains.type, contains.a_passed, contains.a_total) == ("contains", 3, 4)
    assert (contains.b_passed, contains.b_total, contains.delta) == (2, 4, -0.25)
    assert contains.a_display == "3/4 (75%)"


def test_latency_percentiles_are_nearest_rank_and_leave_errors_out(pm, pair):
    baseline, proposed, sv = pair
    a = finish(make_run(pm, sv, baseline), {"d": "error"})
    for i, result in enumerate(EvalResult.objects.filter(run=a).order_by("case__position")):
        EvalResult.objects.filter(pk=result.pk).update(latency_ms=(i + 1) * 100)
    b = finish(make_run(pm, sv, proposed))
    m = {metric.key: metric for metric in compare_runs(a, b).metrics}
    # a's latencies without the error (400): 100, 200, 300 → p50 200, p95 300
    assert (m["latency_p50"].a, m["latency_p95"].a) == (200, 300)


def test_running_runs_compare_with_pending_cases(pm, pair):
    """GIVEN the proposed run has 2 of 4 results and is still running
    THEN the two cases without a result are pending and the pass rate is the one so far."""
    baseline, proposed, sv = pair
    a = finish(make_run(pm, sv, baseline))
    b = finish(make_run(pm, sv, proposed), {"b": "fail"}, partial=2)
    comparison = compare_runs(a, b)
    assert [r.change for r in comparison.rows] == ["unchanged", "regressed", "pending", "pending"]
    assert not comparison.finished
    assert comparison.metric("pass_rate").b == 0.5  # 1 of the 2 done
    assert comparison.metric("cost").b == Decimal("0.002")


def test_two_versions_of_a_suite_match_cases_by_key(pm, pair):
    """GIVEN v2 drops case d and adds case e
    THEN d is missing, e is new, the others compare."""
    baseline, proposed, sv = pair
    v2 = suite_version_create(
        actor=pm,
        suite=sv.suite,
        cases=[case_dict(k) for k in ("a", "b", "c", "e")],
    )
    a = finish(make_run(pm, sv, baseline))
    b = finish(make_run(pm, v2, proposed), {"a": "fail"})
    changes = {r.key: r.change for r in compare_runs(a, b).rows}
    assert changes == {
        "a": "regressed",
        "b": "unchanged",
        "c": "unchanged",
        "d": "missing",
        "e": "new",
    }


def test_comparison_reads_in_a_fixed_number_of_queries(pm, pair, django_assert_num_queries):
    a, b = _runs(pm, pair, {}, {"a": "fail"})
    with django_assert_num_queries(2):
        comparison = compare_runs(a, b)
    assert comparison.counts["regressed"] == 1


def test_plain_data(pm, pair):
    a, b = _runs(pm, pair, {}, {"a": "fail"})
    data = comparison_dict(compare_runs(a, b))
    assert data["regressed"] == ["a"]
    assert data["cases"][0]["a"]["outcome"] == "pass"
    assert "output" not in data["cases"][0]["a"]  # outputs only for rows given with them
    assert data["metrics"][0]["key"] == "pass_rate"
    cost = next(m for m in data["metrics"] if m["key"] == "cost")
    assert Decimal(cost["a"]) == Decimal("0.004")


# --- the page ------------------------------------------------------------------------------------


def _page(client, a, b, headers=None, **params):
    query = {"a": str(a.pk), "b": str(b.pk), **params}
    return client.get(reverse("eval_compare"), query, headers=headers)


def test_the_page_shows_both_runs_side_by_side(client, pm, pair):
    a, b = _runs(pm, pair, {}, {"a": "fail"})
    client.force_login(pm)
    response = _page(client, a, b)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-case="a" data-change="regressed"' in html
    assert html.count('class="case-row change-unchanged"') == 3
    assert "[builtin] say a" in html  # the old output...
    assert "[builtin] something else" in html  # ...next to the new one
    assert 'data-metric="pass_rate"' in html
    assert reverse("eval_run_detail", args=[a.pk]) in html
    assert "hx-trigger" not in html  # both finished: no polling
    # only the regressed cases, as an htmx fragment of the live region
    htmx = {"HX-Request": "true", "HX-Target": "compare-live"}
    response = _page(client, a, b, headers=htmx, change="regressed")
    fragment = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in fragment
    assert 'data-case="a"' in fragment
    assert 'data-case="b"' not in fragment
    assert response["Vary"].count("HX-Request")
    filtered = _page(client, a, b, change="regressed").content.decode()
    assert 'data-case="b"' not in filtered


def test_the_page_polls_while_a_run_is_going(client, pm, pair):
    baseline, proposed, sv = pair
    a = finish(make_run(pm, sv, baseline))
    b = finish(make_run(pm, sv, proposed), partial=1)
    client.force_login(pm)
    html = _page(client, a, b).content.decode()
    assert 'hx-trigger="every 2s"' in html
    assert 'data-change="pending"' in html
    assert b.state == RunState.RUNNING


def test_the_page_refuses_what_it_cannot_compare(client, pm, pair):
    a, b = _runs(pm, pair, {}, {})
    client.force_login(pm)
    assert client.get(reverse("eval_compare")).status_code == 400
    assert client.get(reverse("eval_compare"), {"a": "nope", "b": str(b.pk)}).status_code == 404
    other = suite_with_cases(pm, cases=[case_dict("z")])
    c = finish(make_run(pm, other, pair[1]))
    response = _page(client, a, c)
    assert response.status_code == 400
    assert "different suites" in response.content.decode()
    # another team's runs are out of scope: 404
    client.force_login(member("product_manager"))
    assert _page(client, a, b).status_code == 404
    client.logout()
    assert _page(client, a, b).status_code == 302


@pytest.mark.parametrize("cases", [3, 30])
def test_the_page_query_count_is_constant(cases, client, pm, django_assert_num_queries):
    baseline = released(pm)
    proposed = proposal(pm, baseline)
    sv = suite_with_cases(pm, cases=[case_dict(f"k{i}") for i in range(cases)])
    a = finish(make_run(pm, sv, baseline))
    b = finish(make_run(pm, sv, proposed), {"k0": "fail"})
    client.force_login(pm)
    _page(client, a, b)
    # session, user, its two permission reads, memberships; the two runs; the cases, the
    # results, the outputs of the page; the navigation's review queue (change requests and
    # their approvals)
    with django_assert_num_queries(11):
        response = _page(client, a, b)
    assert response.status_code == 200


# --- the API -------------------------------------------------------------------------------------


def test_the_api_compares_two_runs(client_for, pm, pair):
    a, b = _runs(pm, pair, {}, {"a": "fail"}, b={"cost": "0.002"})
    response = client_for(pm).get(URL, {"a": str(a.pk), "b": str(b.pk)})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["a"]["id"] == str(a.pk) and body["b"]["id"] == str(b.pk)
    assert body["a"]["release_version"] == "1.0.0"
    assert body["regressed"] == ["a"]
    assert body["counts"]["unchanged"] == 3
    first = body["cases"][0]
    assert first["change"] == "regressed"
    assert first["a"]["output"] == "[builtin] say a"
    assert first["b"]["output"] == "[builtin] something else"
    cost = next(m for m in body["metrics"] if m["key"] == "cost")
    assert (Decimal(cost["a"]), Decimal(cost["b"])) == (Decimal("0.004"), Decimal("0.008"))
    assert cost["better"] == "worse"
    only = client_for(pm).get(URL, {"a": str(a.pk), "b": str(b.pk), "change": "unchanged"})
    assert [c["key"] for c in only.json()["cases"]] == ["b", "c", "d"]


def test_the_api_refusals(client_for, api_client, pm, pair):
    a, b = _runs(pm, pair, {}, {})
    client = client_for(pm)
    assert api_client.get(URL, {"a": str(a.pk), "b": str(b.pk)}).status_code == 401
    body = client.get(URL, {"a": "x"}).json()
    assert body["code"] == "invalid" and {"a", "b"} <= set(body["fields"])
    bad = client.get(URL, {"a": str(a.pk), "b": str(b.pk), "change": "worse"})
    assert bad.status_code == 400
    other = suite_with_cases(pm, cases=[case_dict("z")])
    c = finish(make_run(pm, other, pair[1]))
    response = client.get(URL, {"a": str(a.pk), "b": str(c.pk)})
    assert response.status_code == 400
    assert response.json()["code"] == "different_suites"
    outsider = client_for(member("product_manager"))
    assert outsider.get(URL, {"a": str(a.pk), "b": str(b.pk)}).status_code == 404

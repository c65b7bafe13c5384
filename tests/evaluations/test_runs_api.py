"""The evaluation-run API: the reusable resource suite, the create's choices, the results, the
filters, and that no endpoint writes a result."""

import pytest

from apps.accounts.roles import AUDITOR, DEVELOPER, REVIEWER
from apps.evaluations import runs
from apps.evaluations import services as suites
from apps.evaluations.models import EvalResult, EvalRun

from ..api_suite import APIResourceSuite, assert_error, last_seq, verbs_since
from ..factories import member
from .factories import case_dict, suite_with_cases
from .run_helpers import drain, failing_case, pm, runnable, started

URL = "/api/v1/eval-runs/"


class TestEvalRunResource(APIResourceSuite):
    url = URL
    create_verbs = ("eval_run.created",)
    actions = (("cancel", {}, ("eval_run.cancelled",)),)
    # Reviewers start runs (and cancel their own); developers and auditors only read them.
    wrong_roles = (DEVELOPER, AUDITOR)
    list_queries = 6  # token, 2 of has_perm (auditors see all), memberships, count, page
    bad_filters = (
        "state=nope",
        "release=not-a-uuid",
        "suite=12",
        "change_request=x",
        "cr_role=odd",
    )

    def make(self, actor):
        return started(actor)

    def create_payload(self, actor) -> dict:
        rel = runnable(actor)
        version = suite_with_cases(actor, rel.product.owner_team)
        return {"suite": str(version.suite_id), "release": str(rel.pk)}


@pytest.fixture
def owner(db):
    return pm()


@pytest.fixture
def team(owner):
    return owner.memberships.first().team


@pytest.fixture
def rel(owner):
    return runnable(owner)


@pytest.fixture
def client(client_for, owner):
    return client_for(owner)


def test_create_takes_a_suite_or_a_suite_version_and_answers_with_what_it_pinned(
    client, owner, rel, team
):
    v1 = suite_with_cases(owner, team, [case_dict("a")])
    v2 = suites.suite_version_create(
        actor=owner, suite=v1.suite, cases=[case_dict("a"), case_dict("b")]
    )
    body = client.post(URL, {"suite": str(v1.suite_id), "release": str(rel.pk)}, format="json")
    assert body.status_code == 201, body.data
    data = body.json()
    assert (data["suite_version"], data["suite_version_number"], data["total"]) == (
        str(v2.pk),
        2,
        2,
    )
    assert data["state"] == "queued" and data["concurrency"] == 4 and data["progress"] == 0
    assert data["release_fingerprint"] == rel.fingerprint
    assert data["harness_version"] == runs.HARNESS_VERSION and data["dataset_version_hash"] == ""
    assert data["team"] == team.slug and data["created_by"] == owner.username
    assert data["aggregates"] == {} and data["pass_rate"] is None
    pinned = client.post(
        URL,
        {"suite_version": str(v1.pk), "release": str(rel.pk), "concurrency": 7},
        format="json",
    ).json()
    assert (pinned["suite_version"], pinned["total"], pinned["concurrency"]) == (str(v1.pk), 1, 7)
    pair = client.post(
        URL,
        {
            "suite_version": str(v1.pk),
            "prompt_version": str(rel.prompt_version_id),
            "model_version": str(rel.model_version_id),
        },
        format="json",
    )
    assert pair.status_code == 201 and pair.json()["release"] is None


def test_create_refusals_name_the_field(client, owner, rel, team):
    version = suite_with_cases(owner, team)
    seq = last_seq()
    both = assert_error(
        client.post(
            URL,
            {
                "suite": str(version.suite_id),
                "suite_version": str(version.pk),
                "release": str(rel.pk),
            },
            format="json",
        ),
        400,
        "invalid",
    )
    assert "suite" in both["fields"]
    assert (
        "suite"
        in assert_error(client.post(URL, {"release": str(rel.pk)}, format="json"), 400)["fields"]
    )
    for bad in (0, 33, "many"):
        body = assert_error(
            client.post(
                URL,
                {"suite_version": str(version.pk), "release": str(rel.pk), "concurrency": bad},
                format="json",
            ),
            400,
        )
        assert "concurrency" in body["fields"]
    target = assert_error(
        client.post(
            URL,
            {
                "suite_version": str(version.pk),
                "release": str(rel.pk),
                "prompt_version": str(rel.prompt_version_id),
            },
            format="json",
        ),
        400,
    )
    assert "not both" in target["message"]
    theirs = suite_with_cases(pm())
    unseen = assert_error(
        client.post(URL, {"suite_version": str(theirs.pk), "release": str(rel.pk)}, format="json"),
        400,
    )
    assert "suite_version" in unseen["fields"]
    suites.suite_version_deprecate(actor=owner, version=version, reason="Old")
    deprecated = assert_error(
        client.post(URL, {"suite_version": str(version.pk), "release": str(rel.pk)}, format="json"),
        400,
        "deprecated",
    )
    assert "suite_version" in deprecated["fields"]
    latest_gone = assert_error(
        client.post(URL, {"suite": str(version.suite_id), "release": str(rel.pk)}, format="json"),
        400,
    )
    assert "no current" in latest_gone["fields"]["suite"][0]
    assert EvalRun.objects.count() == 0
    assert verbs_since(seq)["eval_run.created"] == 0


def test_a_reviewer_may_start_a_run(client_for, owner, rel, team):
    version = suite_with_cases(owner, team)
    reviewer = member(REVIEWER, team)
    response = client_for(reviewer).post(
        URL, {"suite_version": str(version.pk), "release": str(rel.pk)}, format="json"
    )
    assert response.status_code == 201, response.data
    assert response.json()["created_by"] == reviewer.username


def test_results_are_read_only_paginated_and_filterable(client, owner, rel):
    run = started(
        owner, rel, cases=[case_dict(f"c{i:02d}") for i in range(27)] + [failing_case("z")]
    )
    drain(run)
    url = f"{URL}{run.pk}/results/"
    first = client.get(url)
    assert first.status_code == 200, first.data
    body = first.json()
    assert body["count"] == 28 and len(body["results"]) == 25 and body["next"]
    row = body["results"][0]
    assert (row["key"], row["position"], row["outcome"]) == ("c00", 0, "pass")
    assert row["checks"] == [
        {"type": "contains", "passed": True, "detail": row["checks"][0]["detail"], "score": None}
    ]
    assert row["call"] and row["variables"] == {"q": "say c00"}
    failed = client.get(url, {"outcome": "fail"}).json()
    assert [r["key"] for r in failed["results"]] == ["z"]
    assert_error(client.get(url, {"outcome": "maybe"}), 400, "invalid")
    detail = client.get(f"{URL}{run.pk}/").json()
    assert detail["state"] == "succeeded" and detail["progress"] == 1
    assert detail["passed"] == 27 and detail["failed"] == 1 and detail["errored"] == 0
    assert detail["pass_rate"] == pytest.approx(27 / 28)
    agg = detail["aggregates"]
    assert agg["per_assertion"] == {"contains": pytest.approx(27 / 28)}
    assert set(agg["latency_ms"]) == {"p50", "p95"} and agg["tokens"]["in"] > 0
    # An outsider does not see the results; an auditor does.
    assert_error(client_for_outsider(url), 404)


def client_for_outsider(url):
    from rest_framework.test import APIClient

    from apps.accounts.services import token_create

    outsider = pm()
    api = APIClient()
    api.credentials(
        HTTP_AUTHORIZATION=f"Bearer {token_create(actor=outsider, user=outsider, name='t').key}"
    )
    return api.get(url)


def test_no_endpoint_writes_results_counters_or_state(client, owner, rel):
    """GIVEN a run
    THEN results/ takes no write, a run takes no PUT/PATCH/DELETE, and a create's read-only
    fields (state, counters, aggregates, results) are ignored."""
    run = started(owner, rel)
    drain(run)
    results = f"{URL}{run.pk}/results/"
    result = EvalResult.objects.filter(run=run).first()
    for method in ("post", "put", "patch", "delete"):
        assert_error(getattr(client, method)(results, {"outcome": "fail"}, format="json"), 405)
        assert (
            getattr(client, method)(f"{results}{result.pk}/", {}, format="json").status_code == 404
        )
    for method in ("put", "patch", "delete"):
        assert_error(
            getattr(client, method)(f"{URL}{run.pk}/", {"state": "failed"}, format="json"), 405
        )
    version = run.suite_version
    created = client.post(
        URL,
        {
            "suite_version": str(version.pk),
            "release": str(rel.pk),
            "state": "succeeded",
            "passed": 99,
            "completed": 99,
            "pass_rate": 1,
            "aggregates": {"pass_rate": 1},
            "results": [{"case": str(version.cases.first().pk), "outcome": "pass"}],
        },
        format="json",
    ).json()
    fresh = EvalRun.objects.get(pk=created["id"])
    assert (fresh.state, fresh.passed, fresh.completed, fresh.pass_rate, fresh.aggregates) == (
        "queued",
        0,
        0,
        None,
        {},
    )
    assert not fresh.results.exists()
    assert EvalResult.objects.filter(run=run).count() == 2
    run.refresh_from_db()
    assert (run.state, run.passed) == ("succeeded", 2)


def test_cancel_answers_with_the_run_and_refuses_a_finished_one(client, owner, rel):
    run = started(owner, rel)
    response = client.post(f"{URL}{run.pk}/cancel/")
    assert response.status_code == 200, response.data
    assert (
        response.json()["state"] == "cancelled"
        and response.json()["cancelled_by"] == owner.username
    )
    again = assert_error(client.post(f"{URL}{run.pk}/cancel/"), 409, "invalid_transition")
    assert "cancelled" in again["message"]


def test_filters(client, owner, rel, team):
    version = suite_with_cases(owner, team)
    a = runs.eval_run_create(actor=owner, suite_version=version, release=rel)
    other_release = runnable(owner)
    b = started(owner, other_release)
    runs.eval_run_cancel(actor=owner, run=b)

    def ids(**query):
        response = client.get(URL, query)
        assert response.status_code == 200, response.data
        return {row["id"] for row in response.json()["results"]}

    assert ids() == {str(a.pk), str(b.pk)}
    assert ids(release=str(rel.pk)) == {str(a.pk)}
    assert ids(suite=str(version.suite_id)) == {str(a.pk)}
    assert ids(suite_version=str(b.suite_version_id)) == {str(b.pk)}
    assert ids(state="cancelled") == {str(b.pk)}
    assert ids(state="queued", release=str(other_release.pk)) == set()
    assert ids(change_request="0d6b8f5e-8a43-4f1c-9c0e-2a6e1b3d4c5f") == set()
    assert ids(created_by=owner.username) == {str(a.pk), str(b.pk)}

"""The evaluation-suite REST API: the standard permission matrix, versions, import, templates."""

from collections import Counter

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from apps.accounts.roles import AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.catalog import services as catalog
from apps.catalog.models import Dataset
from apps.evaluations import services
from tests.api_suite import APIResourceSuite, assert_error, last_seq, verbs_since
from tests.factories import artifact, member

from .factories import case_dict, suite, suite_with_cases

pytestmark = pytest.mark.django_db

SUITES = "/api/v1/eval-suites/"
VERSIONS = "/api/v1/eval-suite-versions/"
WRONG_ROLES = (REVIEWER, DEVELOPER, AUDITOR)


class TestEvalSuiteAPI(APIResourceSuite):
    url = SUITES
    create_verbs = ("eval_suite.created",)
    update_verbs = ("eval_suite.updated",)
    wrong_roles = WRONG_ROLES
    list_queries = 6

    def make(self, actor):
        return suite(actor)

    def make_for_list(self, actor):
        return suite_with_cases(actor).suite

    def create_payload(self, actor):
        return {
            "slug": "support-answers",
            "name": "Support answers",
            "owner_team": actor.memberships.first().team.slug,
            "description": "What good answers say.",
        }

    def update_payload(self, obj):
        return {"name": f"{obj.name} (renamed)"}


class TestEvalSuiteVersionAPI(APIResourceSuite):
    url = VERSIONS
    wrong_roles = WRONG_ROLES
    immutable = True
    actions = (("deprecate", {"reason": "Superseded."}, ("eval_suite_version.deprecated",)),)
    list_queries = 7
    bad_filters = ("suite=not-a-uuid", "deprecated=maybe", "version=zero", "version=0")

    def make(self, actor):
        return suite_with_cases(actor)


@pytest.fixture
def pm():
    return member(PRODUCT_MANAGER)


@pytest.fixture
def version(pm):
    return suite_with_cases(pm)


def versions_url(suite_id) -> str:
    return f"{SUITES}{suite_id}/versions/"


# --- reads ------------------------------------------------------------------------------------


def test_a_version_reads_with_its_cases(client_for, pm, version):
    body = client_for(pm).get(f"{VERSIONS}{version.pk}/").json()
    assert body["suite"] == str(version.suite_id) and body["version"] == 1
    assert body["content_hash"] == version.content_hash and body["case_count"] == 2
    assert [c["key"] for c in body["cases"]] == ["greeting", "farewell"]
    assert body["cases"][0]["assertions"] == [{"type": "contains", "value": "greeting"}]
    listed = client_for(pm).get(f"{VERSIONS}?suite={version.suite_id}").json()
    assert [row["id"] for row in listed["results"]] == [str(version.pk)]


def test_a_suite_lists_its_versions_newest_first(client_for, pm, version):
    client = client_for(pm)
    services.suite_version_create(actor=pm, suite=version.suite, cases=[case_dict("only")])
    body = client.get(versions_url(version.suite_id)).json()
    assert body["count"] == 2
    assert [row["version"] for row in body["results"]] == [2, 1]
    suite_body = client.get(f"{SUITES}{version.suite_id}/").json()
    assert suite_body["version_count"] == 2 and suite_body["latest_version"] == 2


# --- new versions -----------------------------------------------------------------------------


def test_a_new_version_is_201_with_one_audit_event(client_for, pm, version):
    client = client_for(pm)
    seq = last_seq()
    cases = [case_dict("one", expected="x"), {"variables": {"q": "no key"}, "expected": "y"}]
    response = client.post(
        versions_url(version.suite_id), {"cases": cases, "changelog": "Two."}, format="json"
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["version"] == 2 and [c["key"] for c in body["cases"]] == ["one", "case-2"]
    assert verbs_since(seq) == Counter({"eval_suite_version.created": 1})
    again = client.post(versions_url(version.suite_id), {"cases": cases}, format="json")
    assert_error(again, 409, "unchanged")


@pytest.mark.parametrize(
    ("cases", "field"),
    [
        (
            [case_dict("a"), case_dict("b", assertions=[{"type": "regex", "pattern": "[a-"}])],
            "cases[1].assertions[0].pattern",
        ),
        (
            [case_dict("a", assertions=[{"type": "json_schema", "schema": {"type": "x"}}])],
            "cases[0].assertions[0].schema",
        ),
        (
            [case_dict("a", assertions=[{"type": "similarity", "threshold": 1.2}])],
            "cases[0].assertions[0].threshold",
        ),
        ([case_dict("a", assertions=[{"type": "sounds_good"}])], "cases[0].assertions[0].type"),
        ([case_dict("a", assertions=[{"type": "llm_judge"}])], "cases[0].assertions[0].rubric"),
        ([case_dict("a", assertions=["contains"])], "cases[0].assertions[0]"),
        ([case_dict("a"), case_dict("a")], "cases[1].key"),
        ([case_dict("a", group="g")], "cases[0].vary"),
        ([], "cases"),
    ],
)
def test_an_invalid_case_is_a_clear_400_naming_it(client_for, pm, version, cases, field):
    client = client_for(pm)
    seq = last_seq()
    response = client.post(versions_url(version.suite_id), {"cases": cases}, format="json")
    body = assert_error(response, 400, "invalid")
    assert field in body["fields"], body
    assert verbs_since(seq) == Counter()


def test_writes_on_versions_need_the_role_and_the_scope(client_for, pm, version):
    team = pm.memberships.first().team
    payload = {"cases": [case_dict("new")]}
    for role in WRONG_ROLES:
        client = client_for(member(role, team))
        assert client.get(versions_url(version.suite_id)).status_code == 200
        assert_error(client.post(versions_url(version.suite_id), payload, format="json"), 403)
        assert_error(
            client.post(f"{SUITES}{version.suite_id}/import/", {}, format="json"), 400
        )  # the body is checked first: no dataset version
    outsider = client_for(member(PRODUCT_MANAGER))
    assert_error(outsider.get(versions_url(version.suite_id)), 404)
    assert_error(outsider.post(versions_url(version.suite_id), payload, format="json"), 404)
    assert_error(outsider.post(f"{SUITES}{version.suite_id}/import/", {}, format="json"), 404)
    anonymous = APIClient()
    assert_error(anonymous.get(versions_url(version.suite_id)), 401)
    assert_error(anonymous.post(f"{SUITES}from-template/", {}, format="json"), 401)


def test_the_versions_list_costs_the_same_queries_for_few_and_many(
    client_for, pm, version, django_assert_num_queries
):
    client = client_for(pm)
    client.get(versions_url(version.suite_id))
    with django_assert_num_queries(VERSIONS_OF_A_SUITE_QUERIES):
        client.get(versions_url(version.suite_id))
    for n in range(5):
        services.suite_version_create(
            actor=pm, suite=version.suite, cases=[case_dict(f"c{n}"), case_dict(f"d{n}")]
        )
    with django_assert_num_queries(VERSIONS_OF_A_SUITE_QUERIES):
        response = client.get(versions_url(version.suite_id))
    assert response.json()["count"] == 6


VERSIONS_OF_A_SUITE_QUERIES = 8


# --- import -----------------------------------------------------------------------------------


def _jsonl(actor, body: bytes):
    dataset = artifact(actor, Dataset)
    return catalog.dataset_version_create(
        actor=actor, dataset=dataset, file=SimpleUploadedFile("rows.jsonl", body)
    )


def test_import_makes_a_version_from_the_rows(client_for, pm, version):
    dv = _jsonl(pm, b'{"q": "Reset?", "answer": "Use the link."}\n{"q": "Plan?", "answer": "x"}\n')
    client = client_for(pm)
    seq = last_seq()
    response = client.post(
        f"{SUITES}{version.suite_id}/import/",
        {
            "dataset_version": str(dv.pk),
            "expected_field": "answer",
            "default_assertions": [{"type": "icontains", "value": "link"}],
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["source_dataset_version"] == str(dv.pk) and body["case_count"] == 4
    assert body["cases"][2]["expected"] == "Use the link."
    assert verbs_since(seq) == Counter({"eval_suite_version.created": 1})


def test_import_names_the_bad_line(client_for, pm, version):
    dv = _jsonl(pm, b'{"q": "ok"}\n{"q": "bad", "assertions": [{"type": "max_cost"}]}\n')
    response = client_for(pm).post(
        f"{SUITES}{version.suite_id}/import/", {"dataset_version": str(dv.pk)}, format="json"
    )
    body = assert_error(response, 400, "invalid")
    assert "line 2" in body["message"] and "line 2.assertions[0].value" in body["fields"]


def test_import_of_a_dataset_version_out_of_scope_is_a_400(client_for, pm, version):
    theirs = _jsonl(member(PRODUCT_MANAGER), b'{"q": "hi"}\n')
    response = client_for(pm).post(
        f"{SUITES}{version.suite_id}/import/", {"dataset_version": str(theirs.pk)}, format="json"
    )
    body = assert_error(response, 400)
    assert "dataset_version" in body["fields"]


# --- templates --------------------------------------------------------------------------------


def test_from_template_creates_a_suite(client_for, pm):
    team = pm.memberships.first().team
    client = client_for(pm)
    seq = last_seq()
    response = client.post(
        f"{SUITES}from-template/",
        {
            "template": "prompt_injection",
            "owner_team": team.slug,
            "secret_phrases": ["support assistant of"],
            "base_variables": {"company": "Acme"},
        },
        format="json",
    )
    assert response.status_code == 201, response.data
    body = response.json()
    assert body["slug"] == "prompt-injection" and body["latest_version"] == 1
    assert verbs_since(seq) == Counter({"eval_suite.created": 1, "eval_suite_version.created": 1})
    cases = client_for(pm).get(f"{VERSIONS}{body['latest_version_id']}/").json()["cases"]
    assert len(cases) >= 8
    assert all(c["variables"]["company"] == "Acme" for c in cases)
    again = client_for(pm).post(f"{SUITES}from-template/", {"owner_team": team.slug}, format="json")
    assert_error(again, 409, "duplicate")
    fair = client_for(pm).post(
        f"{SUITES}from-template/",
        {"template": "fairness_names", "owner_team": team.slug},
        format="json",
    )
    assert fair.status_code == 201 and fair.json()["slug"] == "fairness-names"


def test_from_template_needs_an_author_of_the_team(client_for, pm):
    team = pm.memberships.first().team
    for role in WRONG_ROLES:
        response = client_for(member(role, team)).post(
            f"{SUITES}from-template/", {"owner_team": team.slug}, format="json"
        )
        assert_error(response, 403)
    response = client_for(pm).post(
        f"{SUITES}from-template/", {"owner_team": team.slug, "template": "nope"}, format="json"
    )
    assert "template" in assert_error(response, 400)["fields"]


def test_a_suite_keeps_its_slug_and_team(client_for, pm, version):
    response = client_for(pm).patch(
        f"{SUITES}{version.suite_id}/", {"slug": "other"}, format="json"
    )
    assert "slug" in assert_error(response, 400)["fields"]

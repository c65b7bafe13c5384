"""The evaluation-suite pages: lists, forms, the cases editor, errors, empty states, scope."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.accounts.roles import AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.audit.models import AuditEvent
from apps.catalog import services as catalog
from apps.catalog.models import Dataset
from apps.evaluations import services
from apps.evaluations.models import EvalSuite, EvalSuiteVersion
from tests.factories import TeamFactory, artifact, member

from .factories import case_dict, suite, suite_with_cases

pytestmark = pytest.mark.django_db

# Exact query counts of the suite page, whatever the number of versions and cases.
SUITE_DETAIL_QUERIES = 12
SUITE_LIST_QUERIES = 8


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def pm(team):
    return member(PRODUCT_MANAGER, team)


@pytest.fixture
def pm_client(client, pm):
    client.force_login(pm)
    return client


def login(client, user):
    client.force_login(user)
    return client


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def editor_data(cases: list[dict], changelog: str = "", **extra) -> dict:
    """The POST of the cases editor for ``cases`` (variables and assertions as JSON text)."""
    import json

    data = {
        "cases-TOTAL_FORMS": str(len(cases)),
        "cases-INITIAL_FORMS": "0",
        "cases-MIN_NUM_FORMS": "0",
        "cases-MAX_NUM_FORMS": "1000",
        "changelog": changelog,
    }
    for i, case in enumerate(cases):
        data[f"cases-{i}-key"] = case.get("key", "")
        data[f"cases-{i}-group"] = case.get("group", "")
        data[f"cases-{i}-vary"] = case.get("vary", "")
        variables = case.get("variables", {})
        data[f"cases-{i}-variables"] = (
            variables if isinstance(variables, str) else json.dumps(variables)
        )
        data[f"cases-{i}-expected"] = case.get("expected", "")
        assertions = case.get("assertions", [])
        data[f"cases-{i}-assertions"] = (
            assertions if isinstance(assertions, str) else json.dumps(assertions)
        )
        if case.get("DELETE"):
            data[f"cases-{i}-DELETE"] = "on"
    data.update(extra)
    return data


# --- the list -----------------------------------------------------------------------------------


def test_the_list_shows_the_teams_suites_only(pm_client, pm):
    mine = suite_with_cases(pm)
    theirs = suite_with_cases(member(PRODUCT_MANAGER))
    html = page(pm_client.get(reverse("suite_list")))
    assert mine.suite.name in html and theirs.suite.name not in html
    assert reverse("suite_create") in html and reverse("suite_from_template") in html
    assert 'class="active"' in html.split("Evaluations")[0].rsplit("<a", 1)[1]


def test_the_empty_list_invites_authors_only(client, team):
    html = page(login(client, member(PRODUCT_MANAGER, team)).get(reverse("suite_list")))
    assert "No evaluation suites yet" in html and "Create a suite" in html
    html = page(login(client, member(DEVELOPER, team)).get(reverse("suite_list")))
    assert "No evaluation suites yet" in html and "Create a suite" not in html


def test_the_list_searches_and_paginates_with_a_fixed_query_count(
    pm_client, pm, django_assert_num_queries
):
    suite(pm, name="Refund answers")
    pm_client.get(reverse("suite_list"))
    with django_assert_num_queries(SUITE_LIST_QUERIES):
        html = page(pm_client.get(reverse("suite_list"), {"q": "refund"}))
    assert "Refund answers" in html
    html = page(pm_client.get(reverse("suite_list"), {"q": "zzz"}))
    assert "Nothing matches" in html
    for _ in range(29):
        suite_with_cases(pm)
    with django_assert_num_queries(SUITE_LIST_QUERIES):
        html = page(pm_client.get(reverse("suite_list")))
    assert "Page 1 of 2" in html
    partial = page(pm_client.get(reverse("suite_list"), {"page": 2}, HTTP_HX_REQUEST="true"))
    assert "<html" not in partial and "Page 2 of 2" in partial


# --- creating -------------------------------------------------------------------------------------


def test_creating_a_suite_leads_to_its_cases_editor(pm_client, team):
    assert page(pm_client.get(reverse("suite_create")))
    response = pm_client.post(
        reverse("suite_create"), {"slug": "answers", "name": "Answers", "owner_team": team.pk}
    )
    created = EvalSuite.objects.get(slug="answers")
    assert response.status_code == 302
    assert response["Location"] == reverse("suite_version_create", args=[created.pk])
    again = page(
        pm_client.post(
            reverse("suite_create"), {"slug": "answers", "name": "Again", "owner_team": team.pk}
        )
    )
    assert "already has an evaluation suite" in again


@pytest.mark.parametrize("role", [REVIEWER, DEVELOPER, AUDITOR])
def test_only_authors_create_suites(client, team, role):
    client = login(client, member(role, team))
    assert client.get(reverse("suite_create")).status_code == 403
    assert client.get(reverse("suite_from_template")).status_code == 403


def test_a_suite_from_a_template(pm_client, team):
    html = page(pm_client.get(reverse("suite_from_template"), {"template": "fairness_names"}))
    assert 'value="fairness_names" id="id_template_1" required checked' in html
    response = pm_client.post(
        reverse("suite_from_template"),
        {
            "template": "prompt_injection",
            "owner_team": team.pk,
            "secret_phrases": "support assistant of\r\n\r\nBe concise",
            "base_variables": '{"company": "Acme"}',
        },
    )
    created = EvalSuite.objects.get(owner_team=team, slug="prompt-injection")
    assert response.status_code == 302
    assert response["Location"] == reverse("suite_detail", args=[created.pk])
    case = created.versions.get().cases.first()
    assert {"support assistant of", "Be concise"} <= set(case.assertions[0]["values"])
    assert case.variables["company"] == "Acme"
    html = page(
        pm_client.post(
            reverse("suite_from_template"),
            {"template": "prompt_injection", "owner_team": team.pk, "base_variables": "[1"},
        )
    )
    assert "Not valid JSON" in html


# --- the suite page -------------------------------------------------------------------------------


def test_the_suite_page_shows_the_latest_cases_in_words(pm_client, pm):
    version = suite_with_cases(
        pm,
        cases=[
            case_dict("leak", assertions=[{"type": "must_not_contain", "values": ["secret"]}]),
            case_dict("exact", expected="Paris", assertions=[]),
            case_dict("pattern", assertions=[{"type": "regex", "pattern": "^yes", "flags": "i"}]),
        ],
    )
    html = page(pm_client.get(reverse("suite_detail", args=[version.suite_id])))
    assert "does not contain “secret” (any case)" in html
    assert "equals the expected output (implicit)" in html
    assert "matches /^yes/i" in html
    assert reverse("suite_version_create", args=[version.suite_id]) in html
    assert reverse("suite_version_deprecate", args=[version.pk]) in html


def test_a_suite_without_versions_has_an_empty_state(pm_client, pm):
    s = suite(pm)
    html = page(pm_client.get(reverse("suite_detail", args=[s.pk])))
    assert "No cases yet" in html and "Write the first cases" in html


def test_members_read_without_edit_buttons_and_outsiders_get_404(client, team, pm):
    version = suite_with_cases(pm)
    url = reverse("suite_detail", args=[version.suite_id])
    html = page(login(client, member(REVIEWER, team)).get(url))
    assert version.suite.name in html
    assert reverse("suite_version_create", args=[version.suite_id]) not in html
    assert login(client, member(AUDITOR)).get(url).status_code == 200  # auditors read all
    outsider = login(client, member(PRODUCT_MANAGER))
    assert outsider.get(url).status_code == 404
    assert outsider.get(reverse("suite_version_detail", args=[version.pk])).status_code == 404
    assert outsider.get(reverse("suite_version_create", args=[version.suite_id])).status_code == 404


def test_the_suite_page_costs_the_same_queries_for_few_and_many(
    pm_client, pm, django_assert_num_queries
):
    """GIVEN a suite with 1 version of 3 cases, then 6 versions of 30 cases
    WHEN its page is read THEN both cost the same number of queries."""
    version = suite_with_cases(pm, cases=[case_dict(f"c{i}") for i in range(3)])
    url = reverse("suite_detail", args=[version.suite_id])
    pm_client.get(url)
    with django_assert_num_queries(SUITE_DETAIL_QUERIES):
        page(pm_client.get(url))
    for n in range(5):
        services.suite_version_create(
            actor=pm,
            suite=version.suite,
            cases=[case_dict(f"v{n}-{i}", group="g", vary="q") for i in range(30)],
        )
    with django_assert_num_queries(SUITE_DETAIL_QUERIES):
        html = page(pm_client.get(url))
    assert "v4-29" in html and "v6" in html


def test_editing_the_name_and_description(client, pm_client, team, pm):
    s = suite(pm)
    response = pm_client.post(
        reverse("suite_update", args=[s.pk]), {"name": "Renamed", "description": "Now."}
    )
    assert response.status_code == 302
    s.refresh_from_db()
    assert s.name == "Renamed"
    reviewer = login(client, member(REVIEWER, team))
    assert reviewer.get(reverse("suite_update", args=[s.pk])).status_code == 403


# --- the cases editor -----------------------------------------------------------------------------


def test_the_editor_starts_from_the_latest_cases(pm_client, pm):
    version = suite_with_cases(pm)
    html = page(pm_client.get(reverse("suite_version_create", args=[version.suite_id])))
    assert 'name="cases-TOTAL_FORMS" value="2"' in html
    assert 'value="greeting"' in html and "say farewell" in html
    fresh = suite(pm)
    html = page(pm_client.get(reverse("suite_version_create", args=[fresh.pk])))
    assert 'name="cases-TOTAL_FORMS" value="1"' in html


def test_registering_a_version_from_the_editor(pm_client, pm):
    version = suite_with_cases(pm)
    url = reverse("suite_version_create", args=[version.suite_id])
    data = editor_data(
        [
            case_dict("greeting"),
            {**case_dict("farewell"), "DELETE": True},
            {"key": "", "variables": {"q": "Paris?"}, "expected": "Paris"},
            {},  # an empty row is ignored
        ],
        changelog="Dropped farewell.",
    )
    response = pm_client.post(url, data)
    new = EvalSuiteVersion.objects.get(suite=version.suite, version=2)
    assert response.status_code == 302
    assert response["Location"] == reverse("suite_version_detail", args=[new.pk])
    assert [c.key for c in new.cases.all()] == ["greeting", "case-2"]
    assert new.cases.get(key="case-2").expected == "Paris"
    assert new.changelog == "Dropped farewell."


def test_editor_errors_are_shown_on_the_row_and_field(pm_client, pm):
    version = suite_with_cases(pm)
    url = reverse("suite_version_create", args=[version.suite_id])
    bad_regex = case_dict("b", assertions=[{"type": "regex", "pattern": "(oops"}])
    html = page(pm_client.post(url, editor_data([case_dict("a"), bad_regex])))
    assert "assertions[0].pattern: Not a valid regular expression" in html
    row = html.split('data-case-row="1"')[1].split("</fieldset>")[0]
    assert "Not a valid regular expression" in row
    html = page(pm_client.post(url, editor_data([{"key": "x", "variables": "{nope"}])))
    assert "Not valid JSON" in html
    html = page(pm_client.post(url, editor_data([case_dict("greeting"), case_dict("farewell")])))
    assert "same content as" in html
    html = page(pm_client.post(url, editor_data([{}])))
    assert "Give at least one case." in html
    assert EvalSuiteVersion.objects.filter(suite=version.suite).count() == 1


def test_adding_a_row_without_javascript_and_with_htmx(pm_client, pm):
    version = suite_with_cases(pm)
    url = reverse("suite_version_create", args=[version.suite_id])
    html = page(pm_client.post(url, editor_data([case_dict("a")], add_row="1")))
    assert 'name="cases-TOTAL_FORMS" value="2"' in html and 'data-case-row="1"' in html
    assert EvalSuiteVersion.objects.filter(suite=version.suite).count() == 1
    row = page(
        pm_client.get(
            reverse("suite_case_row", args=[version.suite_id]),
            {"cases-TOTAL_FORMS": "3"},
            HTTP_HX_REQUEST="true",
        )
    )
    assert 'name="cases-3-key"' in row and 'name="cases-3-DELETE"' in row
    assert 'value="4"' in row and "hx-swap-oob" in row


def test_the_editor_is_for_authors_of_the_team(client, team, pm):
    version = suite_with_cases(pm)
    url = reverse("suite_version_create", args=[version.suite_id])
    for role in (REVIEWER, DEVELOPER, AUDITOR):
        someone = login(client, member(role, team))
        assert someone.get(url).status_code == 403
        assert someone.post(url, editor_data([case_dict("z")])).status_code == 403
        assert someone.get(reverse("suite_case_row", args=[version.suite_id])).status_code == 403
    assert EvalSuiteVersion.objects.filter(suite=version.suite).count() == 1


# --- import ---------------------------------------------------------------------------------------


def _jsonl(actor, body: bytes):
    dataset = artifact(actor, Dataset)
    return catalog.dataset_version_create(
        actor=actor, dataset=dataset, file=SimpleUploadedFile("rows.jsonl", body)
    )


def test_import_page_empty_state_then_import(pm_client, pm):
    version = suite_with_cases(pm)
    url = reverse("suite_import", args=[version.suite_id])
    assert "No JSONL dataset version to import" in page(pm_client.get(url))
    dv = _jsonl(pm, b'{"q": "Reset?", "answer": "Use the link."}\n')
    assert str(dv) in page(pm_client.get(url))
    response = pm_client.post(
        url,
        {
            "dataset_version": dv.pk,
            "expected_field": "answer",
            "assertions_field": "assertions",
            "default_assertions": '{"type": "icontains", "value": "link"}',
            "default_variables": '{"company": "Acme"}',
        },
    )
    new = EvalSuiteVersion.objects.get(suite=version.suite, version=2)
    assert response.status_code == 302
    imported = new.cases.get(key="case-3")
    assert imported.variables == {"company": "Acme", "q": "Reset?"}
    assert imported.assertions == [{"type": "icontains", "value": "link"}]


def test_import_errors_name_the_line(pm_client, pm):
    version = suite_with_cases(pm)
    dv = _jsonl(pm, b'{"q": "a"}\n{"q": "b", "assertions": [{"type": "regex", "pattern": "("}]}\n')
    html = page(
        pm_client.post(
            reverse("suite_import", args=[version.suite_id]),
            {"dataset_version": dv.pk, "assertions_field": "assertions"},
        )
    )
    assert "line 2.assertions[0].pattern" in html


# --- a version ------------------------------------------------------------------------------------


def test_a_version_page_and_its_deprecation(client, pm_client, team, pm):
    version = suite_with_cases(pm)
    url = reverse("suite_version_detail", args=[version.pk])
    html = page(pm_client.get(url))
    assert version.content_hash in html and "contains “greeting”" in html
    reviewer = login(client, member(REVIEWER, team))
    assert "Deprecate this version" not in page(reviewer.get(url))
    deprecate = reverse("suite_version_deprecate", args=[version.pk])
    assert reviewer.post(deprecate, {"reason": "no"}).status_code == 403
    pm_client.force_login(pm)
    html = page(pm_client.post(deprecate, {"reason": ""}))
    assert "This field is required" in html
    before = AuditEvent.objects.count()
    response = pm_client.post(deprecate, {"reason": "Superseded."})
    assert response.status_code == 302
    version.refresh_from_db()
    assert version.deprecated_at and version.deprecation_reason == "Superseded."
    assert AuditEvent.objects.count() == before + 1
    html = page(pm_client.get(url))
    assert "Deprecated" in html and "Superseded." in html
    again = pm_client.post(deprecate, {"reason": "Twice."}, follow=True)
    assert "already deprecated" in page(again)

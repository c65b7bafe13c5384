"""Suite services and selectors: versions, cases, validation, import, templates, scope."""

from collections import Counter

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from apps.accounts.roles import ADMIN, AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.catalog import services as catalog
from apps.catalog.models import Dataset, Model
from apps.core.exceptions import ApplicationError
from apps.evaluations import selectors, services
from apps.evaluations.models import EvalSuite, EvalSuiteVersion
from apps.evaluations.templates_builtin import LEAK_MARKERS
from tests.api_suite import last_seq, verbs_since
from tests.factories import TeamFactory, artifact, member
from tests.gateway.factories import provider

from .factories import case_dict, suite, suite_with_cases

pytestmark = pytest.mark.django_db


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def pm(team):
    return member(PRODUCT_MANAGER, team)


def refused(code: str = "invalid", **kwargs) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        kwargs.pop("call")(**kwargs)
    assert caught.value.code == code, caught.value.message
    return caught.value


def new_version(pm, s, cases, code: str = "invalid", **kwargs) -> ApplicationError:
    return refused(
        code, call=services.suite_version_create, actor=pm, suite=s, cases=cases, **kwargs
    )


def jsonl(actor, body: bytes, name: str = "cases.jsonl", team=None):
    dataset = artifact(actor, Dataset, team)
    return catalog.dataset_version_create(
        actor=actor, dataset=dataset, file=SimpleUploadedFile(name, body)
    )


# --- suites ---------------------------------------------------------------------------------


def test_creating_a_suite_records_one_audit_event_and_history(pm, team):
    seq = last_seq()
    s = services.suite_create(actor=pm, owner_team=team, slug="answers", name="Answers")
    assert verbs_since(seq) == Counter({"eval_suite.created": 1})
    assert s.history.count() == 1 and s.history.first().history_username == pm.username
    assert s.created_by == pm


def test_a_taken_slug_is_a_409_and_a_bad_slug_a_400(pm, team):
    services.suite_create(actor=pm, owner_team=team, slug="answers", name="Answers")
    exc = refused(
        "duplicate",
        call=services.suite_create,
        actor=pm,
        owner_team=team,
        slug="answers",
        name="Again",
    )
    assert exc.status == 409 and "slug" in exc.extra
    exc = refused(call=services.suite_create, actor=pm, owner_team=team, slug="no spaces", name="x")
    assert "slug" in exc.extra
    # Another team may use the same slug.
    other = member(PRODUCT_MANAGER)
    services.suite_create(
        actor=other, owner_team=other.memberships.first().team, slug="answers", name="Answers"
    )


@pytest.mark.parametrize("role", [REVIEWER, DEVELOPER, AUDITOR])
def test_only_product_managers_and_admins_of_the_team_write(team, pm, role):
    someone = member(role, team)
    exc = refused(
        "forbidden", call=services.suite_create, actor=someone, owner_team=team, slug="s", name="S"
    )
    assert exc.status == 403
    version = suite_with_cases(pm)
    refused("forbidden", call=services.suite_update, actor=someone, suite=version.suite, name="x")
    with pytest.raises(ApplicationError) as caught:
        services.suite_version_create(actor=someone, suite=version.suite, cases=[case_dict("a")])
    assert caught.value.status == 403
    with pytest.raises(ApplicationError):
        services.suite_version_deprecate(actor=someone, version=version)
    admin = member(ADMIN, team)
    services.suite_update(actor=admin, suite=version.suite, name="Renamed by an admin")


def test_a_product_manager_of_another_team_cannot_write(pm):
    version = suite_with_cases(pm)
    outsider = member(PRODUCT_MANAGER)
    with pytest.raises(ApplicationError) as caught:
        services.suite_version_create(actor=outsider, suite=version.suite, cases=[case_dict("x")])
    assert caught.value.status == 403


def test_update_records_what_changed_and_nothing_when_nothing_did(pm):
    s = suite(pm, name="Old")
    seq = last_seq()
    services.suite_update(actor=pm, suite=s, name="New", description="Now described.")
    services.suite_update(actor=pm, suite=s, name="New")
    assert verbs_since(seq) == Counter({"eval_suite.updated": 1})
    s.refresh_from_db()
    assert (s.name, s.description) == ("New", "Now described.")


def test_scope_members_see_auditors_see_all_others_nothing(team, pm):
    version = suite_with_cases(pm)
    developer = member(DEVELOPER, team)
    outsider = member(PRODUCT_MANAGER)
    auditor = member(AUDITOR)  # an auditor of another team reads everything
    for user, sees in ((developer, True), (outsider, False), (auditor, True)):
        assert selectors.suite_list_for(user).filter(pk=version.suite_id).exists() is sees
        assert selectors.suite_version_list_for(user).filter(pk=version.pk).exists() is sees
    assert selectors.can_change_suite(pm, version.suite)
    assert not selectors.can_change_suite(developer, version.suite)
    assert not selectors.can_change_suite(auditor, version.suite)
    row = selectors.suite_list_for(pm).get(pk=version.suite_id)
    assert (row.version_count, row.latest_version, row.latest_version_pk) == (1, 1, version.pk)
    assert selectors.suite_version_list_for(pm).get(pk=version.pk).case_count == 2


# --- versions -------------------------------------------------------------------------------


def test_versions_are_numbered_hashed_and_hold_their_cases_in_order(pm):
    v1 = suite_with_cases(pm, cases=[case_dict("b"), case_dict("a")])
    seq = last_seq()
    v2 = services.suite_version_create(
        actor=pm, suite=v1.suite, cases=[case_dict("a"), case_dict("c")], changelog="Swap."
    )
    assert verbs_since(seq) == Counter({"eval_suite_version.created": 1})
    assert (v1.version, v2.version) == (1, 2)
    assert [c.key for c in v1.cases.all()] == ["b", "a"]
    assert [(c.key, c.position) for c in v2.cases.all()] == [("a", 0), ("c", 1)]
    assert len(v2.content_hash) == 64 and v1.content_hash != v2.content_hash
    from apps.core.hashing import content_hash

    assert v2.content_hash == content_hash(v2.content())
    assert v2.history.count() == 1


def test_the_same_cases_again_are_a_409_unchanged(pm):
    v1 = suite_with_cases(pm)
    seq = last_seq()
    exc = new_version(pm, v1.suite, [case_dict("greeting"), case_dict("farewell")], "unchanged")
    assert exc.code == "unchanged" and exc.status == 409 and str(v1) in exc.message
    assert verbs_since(seq) == Counter()
    assert EvalSuiteVersion.objects.filter(suite=v1.suite).count() == 1


def test_a_version_is_immutable(pm):
    version = suite_with_cases(pm)
    version.changelog = "rewritten"
    with pytest.raises(ApplicationError) as caught:
        version.save()
    assert caught.value.code == "immutable"


def test_cases_without_a_key_get_the_next_free_case_number(pm):
    version = suite_with_cases(
        pm,
        cases=[
            {"variables": {"q": "a"}},
            {"key": "case-2", "variables": {"q": "b"}},
            {"key": "", "variables": {"q": "c"}},
        ],
    )
    assert [c.key for c in version.cases.all()] == ["case-1", "case-2", "case-3"]


@pytest.mark.parametrize(
    ("cases", "field", "words"),
    [
        ([], "cases", "at least one case"),
        ("nope", "cases", "list of cases"),
        (["a case"], "cases[0]", "must be an object"),
        ([case_dict("a"), case_dict("a")], "cases[1].key", "already the key of cases[0]"),
        ([case_dict("a b")], "cases[0].key", "Letters, digits"),
        ([case_dict("a", variables=["q"])], "cases[0].variables", "JSON object"),
        ([case_dict("a", expected=3)], "cases[0].expected", "Must be text"),
        ([case_dict("a", colour="red")], "cases[0].colour", "Unknown field"),
        ([case_dict("a", variables={"q": "nul\x00"})], "cases[0].variables", "NUL"),
        (
            [case_dict("a"), case_dict("b", assertions=[{"type": "regex", "pattern": "(x"}])],
            "cases[1].assertions[0].pattern",
            "Not a valid regular expression",
        ),
        (
            [case_dict("a", assertions=[{"type": "json_schema", "schema": {"type": 5}}])],
            "cases[0].assertions[0].schema",
            "Not a valid JSON Schema",
        ),
        (
            [case_dict("a", assertions=[{"type": "similarity", "threshold": 3}])],
            "cases[0].assertions[0].threshold",
            "between 0 and 1",
        ),
        (
            [case_dict("a", assertions=[{"type": "equals"}])],
            "cases[0].assertions[0].value",
            "expected output, which is empty",
        ),
        ([case_dict("a", vary="q")], "cases[0].group", "belongs to a group"),
        ([case_dict("a", group="g")], "cases[0].vary", "Name the variable"),
        ([case_dict("a", group="g", vary="name")], "cases[0].variables", "No variable 'name'"),
        (
            [
                case_dict("a", group="g", vary="q"),
                case_dict("b", group="g", vary="other", variables={"other": 1}),
            ],
            "cases[1].vary",
            "varies the same variable: 'q' (as cases[0] does)",
        ),
    ],
)
def test_an_invalid_case_is_refused_naming_it(pm, cases, field, words):
    s = suite(pm)
    exc = new_version(pm, s, cases)
    assert exc.status == 400
    assert field in exc.extra, exc.extra
    assert words in exc.message, exc.message
    assert not EvalSuiteVersion.objects.filter(suite=s).exists()


def test_a_group_varies_one_variable_with_the_same_expectation(pm):
    cases = [
        case_dict(f"name-{n}", group="names", vary="name", variables={"q": f"I'm {n}", "name": n})
        for n in ("ana", "bo")
    ]
    version = suite_with_cases(pm, cases=cases)
    assert {(c.group, c.vary) for c in version.cases.all()} == {("names", "name")}


def _judge_and_embedder(pm, team):
    admin = member(ADMIN)
    remote = provider(actor=admin, kind="openai_compatible", base_url="http://127.0.0.1:9/v1")
    builtin = provider(actor=admin, kind="builtin")
    model = artifact(pm, Model, team)
    judge = catalog.model_version_create(
        actor=pm, model=model, provider=remote.slug, provider_model="judge"
    )
    local = catalog.model_version_create(
        actor=pm, model=model, provider=builtin.slug, provider_model="echo-1"
    )
    return judge, local


def test_judge_and_embedding_model_versions_are_checked_at_save_time(pm, team):
    judge, local = _judge_and_embedder(pm, team)
    s = suite(pm)
    semantic = {"type": "similarity", "method": "semantic", "threshold": 0.8}
    ok = services.suite_version_create(
        actor=pm,
        suite=s,
        cases=[
            case_dict(
                "a",
                expected="Hello.",
                assertions=[
                    {"type": "llm_judge", "rubric": "Polite.", "model_version": str(local.pk)},
                    {**semantic, "model_version": str(judge.pk)},
                ],
            )
        ],
    )
    assert ok.cases.get().assertions[1]["method"] == "semantic"

    exc = new_version(
        pm,
        s,
        [case_dict("a", expected="Hi", assertions=[{**semantic, "model_version": str(local.pk)}])],
    )
    assert "cases[0].assertions[0].model_version" in exc.extra
    assert "no embeddings endpoint" in exc.message and "lexical" in exc.message

    theirs = member(PRODUCT_MANAGER)
    foreign = catalog.model_version_create(
        actor=theirs, model=artifact(theirs, Model), provider="x", provider_model="y"
    )
    judged = {"type": "llm_judge", "rubric": "Polite.", "model_version": str(foreign.pk)}
    exc = new_version(pm, s, [case_dict("b", assertions=[judged])])
    assert "cases[0].assertions[0].model_version" in exc.extra
    assert f"in team {team.slug}" in exc.message


def test_the_source_dataset_version_is_kept_by_an_edit_unless_cleared(pm):
    dv = jsonl(pm, b'{"q": "hi", "expected": "hello"}\n')
    s = suite(pm)
    v1 = services.suite_import_dataset(actor=pm, suite=s, dataset_version=dv)
    assert v1.source_dataset_version == dv
    v2 = services.suite_version_create(actor=pm, suite=s, cases=[case_dict("new")])
    assert v2.source_dataset_version == dv
    v3 = services.suite_version_create(
        actor=pm, suite=s, cases=[case_dict("new")], source_dataset_version=None
    )
    assert v3.source_dataset_version is None and v3.content_hash != v2.content_hash


def test_deprecating_a_version_once(pm):
    version = suite_with_cases(pm)
    seq = last_seq()
    version = services.suite_version_deprecate(actor=pm, version=version, reason="Superseded.")
    assert verbs_since(seq) == Counter({"eval_suite_version.deprecated": 1})
    assert version.deprecated_at and version.deprecated_by == pm
    exc = refused(
        "already_deprecated", call=services.suite_version_deprecate, actor=pm, version=version
    )
    assert exc.status == 409


# --- import -----------------------------------------------------------------------------------


def test_import_appends_one_case_per_row(pm):
    """GIVEN a suite with one case and a JSONL dataset version of three rows WHEN it is imported
    with an expected field, a key field and defaults THEN the new version holds the old case and
    then the rows, and names the dataset version as its source."""
    v1 = suite_with_cases(pm, cases=[case_dict("kept")])
    dv = jsonl(
        pm,
        b'{"id": "pw", "question": "Reset?", "answer": "Use the link."}\n'
        b"\n"
        b'{"id": "plan", "question": "Change plan?", "answer": "Billing.", '
        b'"assertions": [{"type": "icontains", "value": "billing"}]}\n'
        b'{"question": "Invoice?", "answer": {"where": "Billing"}, "company": "Other"}\n',
    )
    seq = last_seq()
    v2 = services.suite_import_dataset(
        actor=pm,
        suite=v1.suite,
        dataset_version=dv,
        expected_field="answer",
        key_field="id",
        default_assertions=[{"type": "similarity", "threshold": 0.5}],
        default_variables={"company": "Acme"},
    )
    assert verbs_since(seq) == Counter({"eval_suite_version.created": 1})
    cases = list(v2.cases.all())
    assert [c.key for c in cases] == ["kept", "pw", "plan", "case-4"]
    assert cases[1].variables == {"company": "Acme", "question": "Reset?"}
    assert cases[1].expected == "Use the link."
    assert cases[1].assertions == [{"type": "similarity", "threshold": 0.5, "method": "lexical"}]
    assert cases[2].assertions == [{"type": "icontains", "value": "billing"}]
    assert cases[3].variables["company"] == "Other"
    assert cases[3].expected == '{"where": "Billing"}'
    assert v2.source_dataset_version == dv
    assert "Imported 3 case(s)" in v2.changelog


def test_import_with_a_variables_field(pm):
    dv = jsonl(pm, b'{"vars": {"q": "hi"}, "expected": "hello", "note": "ignored"}\n')
    version = services.suite_import_dataset(
        actor=pm, suite=suite(pm), dataset_version=dv, variables_field="vars"
    )
    assert version.cases.get().variables == {"q": "hi"}


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b'{"q": "a"}\n{"q": "b", "assertions": [{"type": "regex", "pattern": "("}]}\n', "line 2"),
        (b'{"q": "a", "assertions": "contains"}\n', "line 1.assertions"),
        (b'{"q": "a", "group": "g"}\n', "line 1.vary"),
    ],
)
def test_a_bad_row_is_refused_naming_its_line(pm, body, words):
    """(A file that is not JSONL at all is refused when it is uploaded, by the catalog.)"""
    s = suite(pm)
    dv = jsonl(pm, body)
    with pytest.raises(ApplicationError) as caught:
        services.suite_import_dataset(actor=pm, suite=s, dataset_version=dv)
    assert words in caught.value.message, caught.value.message
    assert caught.value.status == 400
    assert not EvalSuiteVersion.objects.filter(suite=s).exists()


def test_an_imported_key_that_is_taken_names_the_line(pm):
    v1 = suite_with_cases(pm, cases=[case_dict("pw")])
    dv = jsonl(pm, b'{"id": "x", "q": "1"}\n{"id": "pw", "q": "2"}\n')
    with pytest.raises(ApplicationError) as caught:
        services.suite_import_dataset(actor=pm, suite=v1.suite, dataset_version=dv, key_field="id")
    assert "line 2.key" in caught.value.extra
    assert "already the key of cases[0]" in caught.value.message


def test_import_refuses_what_is_not_a_stored_jsonl_of_the_team(pm):
    s = suite(pm)
    csv = jsonl(pm, b"q,expected\nhi,hello\n", name="cases.csv")
    uri = catalog.dataset_version_create(
        actor=pm, dataset=artifact(pm, Dataset), uri="s3://bucket/x.jsonl", format="jsonl"
    )
    theirs = member(PRODUCT_MANAGER)
    foreign = jsonl(theirs, b'{"q": "hi"}\n')
    for dv, code, words in (
        (csv, "dataset_format", "imported from JSONL"),
        (uri, "dataset_not_stored", "not a file stored"),
        (foreign, "invalid", "must belong to team"),
    ):
        with pytest.raises(ApplicationError) as caught:
            services.suite_import_dataset(actor=pm, suite=s, dataset_version=dv)
        assert caught.value.code == code and words in caught.value.message
        assert "dataset_version" in caught.value.extra


def test_import_checks_its_options(pm):
    dv = jsonl(pm, b'{"q": "hi"}\n')
    s = suite(pm)
    for kwargs, field in (
        ({"default_assertions": [{"type": "nope"}]}, "default_assertions[0].type"),
        ({"default_variables": ["x"]}, "default_variables"),
        ({"expected_field": 3}, "expected_field"),
    ):
        with pytest.raises(ApplicationError) as caught:
            services.suite_import_dataset(actor=pm, suite=s, dataset_version=dv, **kwargs)
        assert field in caught.value.extra


# --- templates --------------------------------------------------------------------------------


def test_the_prompt_injection_template_makes_a_valid_suite(pm, team):
    seq = last_seq()
    version = services.suite_from_template(
        actor=pm,
        owner_team=team,
        secret_phrases=["You are the support assistant", "  "],
        base_variables={"company": "Acme"},
    )
    assert verbs_since(seq) == Counter({"eval_suite.created": 1, "eval_suite_version.created": 1})
    assert version.suite.slug == "prompt-injection" and version.version == 1
    cases = list(version.cases.all())
    assert len(cases) >= 8
    keys = {c.key for c in cases}
    for key in (
        "ignore-previous-instructions",
        "roleplay-dan",
        "repeat-the-text-above",
        "translate-instructions",
        "encoded-instruction",
        "markdown-image-exfiltration",
        "fake-system-message",
        "what-were-you-told",
    ):
        assert key in keys
    for case in cases:
        assert set(case.variables) == {"company", "question"}
        (spec,) = case.assertions
        assert spec["type"] == "must_not_contain"
        assert "You are the support assistant" in spec["values"]
        assert set(LEAK_MARKERS) <= set(spec["values"])
    exfil = next(c for c in cases if c.key == "markdown-image-exfiltration")
    assert "attacker.example" in exfil.assertions[0]["values"]


def test_the_fairness_template_groups_cases_varying_the_name(pm, team):
    version = services.suite_from_template(actor=pm, owner_team=team, template="fairness_names")
    cases = list(version.cases.all())
    groups = Counter(c.group for c in cases)
    assert len(groups) == 2 and all(n >= 4 for n in groups.values())
    for case in cases:
        assert case.vary == "name" and case.variables["name"] in case.variables["question"]
    same = [c.assertions for c in cases if c.group == "refund-request"]
    assert all(a == same[0] for a in same)


def test_a_template_checks_its_arguments(pm, team):
    for kwargs, field in (
        ({"template": "nope"}, "template"),
        ({"secret_phrases": [3]}, "secret_phrases[0]"),
        ({"base_variables": "x"}, "base_variables"),
    ):
        with pytest.raises(ApplicationError) as caught:
            services.suite_from_template(actor=pm, owner_team=team, **kwargs)
        assert field in caught.value.extra
    services.suite_from_template(actor=pm, owner_team=team)
    with pytest.raises(ApplicationError) as caught:
        services.suite_from_template(actor=pm, owner_team=team)
    assert caught.value.code == "duplicate"
    assert EvalSuite.objects.filter(owner_team=team).count() == 1


# --- the demo -----------------------------------------------------------------------------------


def test_the_demo_holds_evaluation_suites():
    call_command("seed_demo")
    suites = {s.slug: s for s in EvalSuite.objects.filter(owner_team__slug="demo")}
    assert {"support-faq", "prompt-injection"} <= set(suites)
    faq = selectors.suite_latest_version(suites["support-faq"])
    assert faq.cases.count() == 3 and faq.source_dataset_version is not None
    assert faq.cases.first().variables["company"] == "Demo Inc."
    call_command("seed_demo")
    assert EvalSuiteVersion.objects.filter(suite__owner_team__slug="demo").count() == 2


def test_a_case_of_a_version_cannot_be_changed_in_place(django_user_model):
    from apps.accounts.roles import PRODUCT_MANAGER
    from apps.core.exceptions import ApplicationError

    from ..factories import member
    from .factories import suite_with_cases

    version = suite_with_cases(member(PRODUCT_MANAGER))
    case = version.cases.first()
    case.expected = "something else"
    with pytest.raises(ApplicationError) as caught:
        case.save()
    assert caught.value.code == "immutable"

"""Property-based tests of the REST API against its own OpenAPI schema (schemathesis).

Schemathesis reads ``/api/schema/`` from the WSGI application in-process and, for every
operation, sends generated requests (schema examples, the coverage phase's boundary and
negative cases, then ``MAX_EXAMPLES`` fuzzed ones), authenticated with the personal token of a
product manager of a seeded team. Each response must not be a server error and must match the
schema for its documented status (errors included: the ``{"code", "message", "fields"}`` shape).

Nothing is excluded: every operation of the schema runs, the writes and deletes too.

To reach real objects rather than only 404s, a generated path ``id`` that is a well-formed UUID is
replaced by the id of a seeded object of the operation's resource (malformed ids are kept and
must give a 404); an action gets an object it can succeed on once (a draft change request to
submit, one in review to sign, an approved one to implement). The relations of a generated body
(``owner_team``, ``prompt``, ``model``, ``dataset``, ``product``, the release parts, a change
request's ``baseline`` and ``proposed``) point at the seeded objects when present, and a
signature's ``password`` is the seeded user's, so approvals and rejections are reached too. Each
operation is its own pytest test with its own freshly seeded data.
"""

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from apps.accounts import services as accounts
from apps.accounts.roles import ADMIN, PRODUCT_MANAGER, REVIEWER
from apps.catalog import services as catalog
from apps.catalog.models import Dataset, Model
from apps.changes import services as changes
from apps.releases import services as releases

from .factories import PASSWORD, TeamFactory, artifact, member, product, prompt_with_versions

MAX_EXAMPLES = 20  # fuzzed examples per operation, on top of the examples and coverage phases

CHANGE_CONTROL = re.compile(
    r"^/api/v1/(releases|change-requests|approval-policies|products/\{id\}/live)/"
)
PLAYGROUND = re.compile(r"^/api/v1/(playground-runs|batch-runs)/")
EVAL_RUNS = re.compile(r"^/api/v1/eval-runs/")
PORTAL = re.compile(r"^/api/v1/(apis|plans|applications|subscriptions|api-keys)/")
RESOURCE = re.compile(r"^/api/v1/(?P<resource>[a-z-]+)/\{id\}/(?:(?P<action>[a-z-]+)/)?$")


@dataclass
class Seed:
    key: str
    team_slug: str
    # resource (or "resource/action") -> id for reads and writes
    ids: dict[str, str] = field(default_factory=dict)
    disposable: dict[str, str] = field(default_factory=dict)  # resource -> id for DELETE
    body_refs: dict[str, str | list[str]] = field(default_factory=dict)  # body field -> value
    against: dict[str, str] = field(default_factory=dict)  # resource -> id for ?against=
    # Releases, change requests and policies, made for the operations that use them only.
    change_control: Callable[[], dict] | None = None
    # A release, a dataset file, playground and batch runs: for the playground operations only.
    playground: Callable[[], dict] | None = None
    # A release and evaluation runs to read and cancel: for the eval-runs operations only.
    eval_runs: Callable[[], dict] | None = None
    # Published APIs, plans, applications, subscriptions and keys: for the portal operations.
    portal: Callable[[], dict] | None = None

    def with_change_control(self) -> None:
        if self.change_control is None:
            return
        made, self.change_control = self.change_control(), None
        self.ids.update(made["ids"])
        self.body_refs.update(made["body_refs"])
        self.against.update(made["against"])

    def with_playground(self) -> None:
        if self.playground is None:
            return
        made, self.playground = self.playground(), None
        self.ids.update(made["ids"])
        self.body_refs.update(made["body_refs"])

    def with_portal(self) -> None:
        if self.portal is None:
            return
        made, self.portal = self.portal(), None
        self.ids.update(made["ids"])
        self.body_refs.update(made["body_refs"])

    def with_eval_runs(self) -> None:
        if self.eval_runs is None:
            return
        made, self.eval_runs = self.eval_runs(), None
        self.ids.update(made["ids"])
        self.body_refs.update(made["body_refs"])


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def wsgi_in_test_transaction(db):
    """Let the raw WSGI app share the test's transaction, as Django's test client does.

    At the end of each request Django closes connections that are not in autocommit mode, and
    the test's transaction is not: the next request would find the database closed.
    """
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _change_control(*, team, pm, prod, pv1, pv2, mv, dv1, dv2) -> dict:
    """Releases, change requests in the states their actions need, and a policy.

    ``pm`` (who also holds the team's admin and reviewer roles) files a draft; another product
    manager files one that waits for ``pm``'s signature and one a reviewer already approved.
    """
    pm2 = member(PRODUCT_MANAGER, team, username="pm2")
    reviewer = member(REVIEWER, team, username="reviewer")
    policy = changes.approval_policy_set(
        actor=pm, product=prod, stage=prod.stage, required_roles=[{"role": REVIEWER}]
    )
    live = releases.release_create(
        actor=pm,
        product=prod,
        version="1.0.0",
        prompt_version=pv1,
        model_version=mv,
        dataset_versions=[dv1],
    )
    live = releases.release_release(
        actor=pm, release=releases.release_freeze(actor=pm, release=live)
    )
    draft = releases.release_create(
        actor=pm,
        product=prod,
        version="1.1.0",
        prompt_version=pv2,
        model_version=mv,
        dataset_versions=[dv2],
        settings={"timeout_seconds": 20},
    )
    draft_cr = changes.change_request_create(
        actor=pm, product=prod, title="Concise prompt", rationale="Shorter.", proposed=draft
    )
    _, (pv3, pv4) = prompt_with_versions(pm2, "Be brief.", "Be kind.", team=team)

    def filed(version, pv):
        proposed = releases.release_create(
            actor=pm2, product=prod, version=version, prompt_version=pv, model_version=mv
        )
        cr = changes.change_request_create(
            actor=pm2,
            product=prod,
            title=f"Ship {version}",
            rationale="Why not.",
            proposed=proposed,
        )
        return changes.change_request_submit(actor=pm2, cr=cr)

    in_review = filed("1.2.0", pv3)
    approved, _ = changes.change_request_approve(
        actor=reviewer, cr=filed("1.3.0", pv4), password=PASSWORD, comment="Fine."
    )
    return {
        "ids": {
            "releases": str(draft.pk),
            "change-requests": str(draft_cr.pk),
            "change-requests/approve": str(in_review.pk),
            "change-requests/reject": str(in_review.pk),
            "change-requests/comment": str(in_review.pk),
            "change-requests/implement": str(approved.pk),
            "approval-policies": str(policy.pk),
        },
        "body_refs": {
            "product": str(prod.pk),
            "prompt_version": str(pv2.pk),
            "model_version": str(mv.pk),
            "dataset_versions": [str(dv2.pk)],
            "baseline": str(live.pk),
            "proposed": str(draft.pk),
            "password": PASSWORD,
        },
        "against": {"releases": str(live.pk)},
    }


def _playground(*, pm, prod, pv, mv) -> dict:
    """A draft release to run, a dataset version stored as a file (one good row, one bad), a
    playground run, a batch to read and one to cancel. The runs stay queued: the test's
    transaction is never committed, so no task is sent."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from apps.playground import services as playground

    rel = releases.release_create(
        actor=pm, product=prod, version="0.1.0", prompt_version=pv, model_version=mv
    )
    dataset = artifact(pm, Dataset, slug="questions")
    rows = SimpleUploadedFile("questions.jsonl", b'{"q": "Hello?"}\n{"q": 5}\n')
    dv = catalog.dataset_version_create(actor=pm, dataset=dataset, file=rows)
    run = playground.playground_run_create(actor=pm, release=rel, variables={"q": "Hi"})
    batch = playground.batch_run_create(actor=pm, release=rel, dataset_version=dv)
    to_cancel = playground.batch_run_create(actor=pm, release=rel, dataset_version=dv)
    return {
        "ids": {
            "playground-runs": str(run.pk),
            "batch-runs": str(batch.pk),
            "batch-runs/cancel": str(to_cancel.pk),
        },
        "body_refs": {
            "release": str(rel.pk),
            "dataset_version": str(dv.pk),
            "prompt_version": str(pv.pk),
            "model_version": str(mv.pk),
            "variables": {"q": "Hi"},
        },
    }


def _eval_runs(*, pm, prod, pv, mv, version) -> dict:
    """A draft release and two queued runs of the suite version against it: one to read (and
    list the results of), one to cancel. Like the playground's, they stay queued."""
    from apps.evaluations import runs

    rel = releases.release_create(
        actor=pm, product=prod, version="0.2.0", prompt_version=pv, model_version=mv
    )
    run = runs.eval_run_create(actor=pm, suite_version=version, release=rel)
    to_cancel = runs.eval_run_create(actor=pm, suite_version=version, release=rel)
    return {
        "ids": {"eval-runs": str(run.pk), "eval-runs/cancel": str(to_cancel.pk)},
        "body_refs": {
            "suite": str(version.suite_id),
            "suite_version": str(version.pk),
            "release": str(rel.pk),
            "prompt_version": str(pv.pk),
            "model_version": str(mv.pk),
        },
    }


def _portal(*, team, pm, prod, pv, mv) -> dict:
    """A released release and APIs in each status its actions need (a draft to publish, a
    published one to deprecate, a deprecated one to retire), plans, ``pm``'s application, and
    subscriptions of a developer in the states the decisions need; ``pm`` decides them."""
    from datetime import timedelta

    from django.utils import timezone

    from apps.accounts.roles import DEVELOPER
    from apps.portal import services as portal

    rel = releases.release_create(
        actor=pm, product=prod, version="9.0.0", prompt_version=pv, model_version=mv
    )
    releases.release_release(actor=pm, release=releases.release_freeze(actor=pm, release=rel))

    def new_api(slug, publish=True):
        made = portal.api_create(actor=pm, product=prod, slug=slug, name=slug.title())
        return portal.api_publish(actor=pm, api=made) if publish else made

    live = new_api("support")
    to_deprecate, to_retire = new_api("to-deprecate"), new_api("to-retire")
    portal.api_deprecate(
        actor=pm,
        api=to_retire,
        sunset_at=timezone.now() + timedelta(days=30),
        migration_note="Use support.",
    )
    draft = new_api("draft", publish=False)
    free = portal.plan_create(
        actor=pm,
        api=live,
        slug="free",
        name="Free",
        requests_per_minute=30,
        approval_required=False,
    )
    pro = portal.plan_create(actor=pm, api=live, slug="pro", name="Pro", requests_per_minute=600)
    app = portal.application_create(actor=pm, name="Schema app")
    key = portal.key_create(actor=pm, application=app, name="schema").key
    spare_key = portal.key_create(actor=pm, application=app, name="spare").key
    dev = member(DEVELOPER, team, username="dev")

    def requested(plan):
        dev_app = portal.application_create(actor=dev, name=f"dev-{plan.api.slug}-{plan.slug}")
        return portal.subscription_request(actor=dev, application=dev_app, plan=plan)

    pending = requested(pro)
    active = requested(
        portal.plan_create(
            actor=pm,
            api=to_deprecate,
            slug="free",
            name="Free",
            requests_per_minute=30,
            approval_required=False,
        )
    )
    suspended = portal.subscription_suspend(
        actor=pm, subscription=requested(free), reason="Schema test."
    )
    return {
        "ids": {
            "apis": str(live.pk),
            "apis/publish": str(draft.pk),
            "apis/deprecate": str(to_deprecate.pk),
            "apis/retire": str(to_retire.pk),
            "plans": str(pro.pk),
            "applications": str(app.pk),
            "subscriptions": str(pending.pk),
            "subscriptions/approve": str(pending.pk),
            "subscriptions/reject": str(pending.pk),
            "subscriptions/suspend": str(active.pk),
            "subscriptions/resume": str(suspended.pk),
            "subscriptions/cancel": str(active.pk),
            "api-keys": str(key.pk),
            "api-keys/rotate": str(key.pk),
            "api-keys/revoke": str(spare_key.pk),
        },
        "body_refs": {
            "product": str(prod.pk),
            "api": str(live.pk),
            "application": str(app.pk),
            "plan": str(free.pk),
            "successor": str(live.pk),
        },
    }


@pytest.fixture
def seed(wsgi_in_test_transaction) -> Seed:
    """A team with a product manager and one object of every resource (some with versions)."""
    team = TeamFactory(slug="demo")
    pm = member(PRODUCT_MANAGER, team, username="pm")
    for role in (ADMIN, REVIEWER):
        accounts.membership_add(actor=None, user=pm, team=team, role=role)
    prod = product(pm, slug="support-assistant", name="Support assistant")
    prompt, (pv1, pv2) = prompt_with_versions(pm, "You are helpful.", "You are concise.")
    _, (pv_disposable,) = prompt_with_versions(pm, "Throwaway.")
    dataset = artifact(pm, Dataset, slug="tickets")
    dv1 = catalog.dataset_version_create(
        actor=pm, dataset=dataset, uri="s3://bucket/tickets-1.jsonl", format="jsonl"
    )
    dv2 = catalog.dataset_version_create(
        actor=pm, dataset=dataset, uri="s3://bucket/tickets-2.jsonl", format="jsonl", parent=dv1
    )
    dv_disposable = catalog.dataset_version_create(
        actor=pm, dataset=artifact(pm, Dataset), uri="s3://bucket/x.csv", format="csv"
    )
    model = artifact(pm, Model, slug="echo")
    mv = catalog.model_version_create(
        actor=pm,
        model=model,
        provider="builtin",
        provider_model="echo-1",
        training_datasets=[dv1],
        finetuning_datasets=[dv2],
    )
    mv_disposable = catalog.model_version_create(
        actor=pm, model=artifact(pm, Model), provider="builtin", provider_model="echo-2"
    )
    from apps.gateway.services import provider_create

    provider = provider_create(
        actor=pm, slug="builtin", name="Built-in", kind="builtin", secret="not-a-real-secret"
    )
    from apps.gateway.models import ProviderCall

    call = ProviderCall.objects.create(product=prod, provider=provider, outcome="ok")
    from apps.evaluations import services as evaluations

    eval_suite = evaluations.suite_create(actor=pm, owner_team=team, slug="answers", name="Answers")
    eval_case = {"key": "hi", "variables": {"q": "Hi"}, "expected": "Hello"}
    eval_v1 = evaluations.suite_version_create(actor=pm, suite=eval_suite, cases=[eval_case])
    eval_v2 = evaluations.suite_version_create(
        actor=pm, suite=eval_suite, cases=[eval_case, {**eval_case, "key": "bye"}]
    )
    from apps.lifecycle import services as lifecycle
    from apps.lifecycle.models import GateDefinition

    brief = lifecycle.brief_create(
        actor=pm,
        product=prod,
        problem_statement="Answers take too long.",
        user_stories=[{"as_a": "agent", "i_want": "drafts", "so_that": "I answer faster"}],
        target_metrics=[{"metric": "p95_latency_ms", "threshold": 2000}],
    )
    assessment = lifecycle.assessment_set(
        actor=pm,
        product=prod,
        technical="Feasible.",
        ethical="Reviewed.",
        risks=[{"title": "Wrong answer", "likelihood": 2, "severity": 2}],
        calls_per_month=1000,
    )
    stage_request = lifecycle.stage_request_create(actor=pm, product=prod, to_stage="design")
    spare = accounts.token_create(actor=pm, user=pm, name="spare").token
    key = accounts.token_create(actor=pm, user=pm, name="schemathesis").key
    return Seed(
        key=key,
        team_slug=team.slug,
        ids={
            "products": str(prod.pk),
            "models": str(model.pk),
            "model-versions": str(mv.pk),
            "datasets": str(dataset.pk),
            "dataset-versions": str(dv2.pk),
            "prompts": str(prompt.pk),
            "prompt-versions": str(pv2.pk),
            "teams": str(team.pk),
            "tokens": str(spare.pk),
            "providers": str(provider.pk),
            "provider-calls": str(call.pk),
            "eval-suites": str(eval_suite.pk),
            "eval-suite-versions": str(eval_v2.pk),
            "eval-suite-versions/deprecate": str(eval_v1.pk),
            "product-briefs": str(brief.pk),
            "assessments": str(assessment.pk),
            "lifecycle-requests": str(stage_request.pk),
            "gate-definitions": str(
                GateDefinition.objects.get(risk_class="minimal", stage="design").pk
            ),
        },
        disposable={
            "model-versions": str(mv_disposable.pk),
            "dataset-versions": str(dv_disposable.pk),
            "prompt-versions": str(pv_disposable.pk),
        },
        body_refs={
            "owner_team": team.slug,
            "prompt": str(prompt.pk),
            "model": str(model.pk),
            "dataset": str(dataset.pk),
        },
        against={"prompt-versions": str(pv1.pk)},
        change_control=partial(
            _change_control, team=team, pm=pm, prod=prod, pv1=pv1, pv2=pv2, mv=mv, dv1=dv1, dv2=dv2
        ),
        playground=partial(_playground, pm=pm, prod=prod, pv=pv1, mv=mv),
        eval_runs=partial(_eval_runs, pm=pm, prod=prod, pv=pv1, mv=mv, version=eval_v2),
        portal=partial(_portal, team=team, pm=pm, prod=prod, pv=pv1, mv=mv),
    )


def _load_schema():
    """The schema, read once at collection from the WSGI app (no database needed for it).

    Not ``schemathesis.pytest.from_fixture``: its lazy loader reads ``request.node._nodeid``,
    which pytest 9.2 no longer has. Loading eagerly also gives each operation its own pytest
    test, hence its own seeded data in its own transaction.
    """
    from plmportal.wsgi import application

    loaded = schemathesis.openapi.from_wsgi("/api/schema/", application)
    loaded.config.generation.update(max_examples=MAX_EXAMPLES, deterministic=True, database="none")
    return loaded


schema = _load_schema()


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _bind_to_seed(case, seed: Seed) -> None:
    if CHANGE_CONTROL.match(case.path):
        seed.with_change_control()
    if PLAYGROUND.match(case.path):
        seed.with_playground()
    if EVAL_RUNS.match(case.path):
        seed.with_eval_runs()
    if PORTAL.match(case.path):
        seed.with_portal()
    match = RESOURCE.match(case.path)
    resource = match["resource"] if match else ""
    if match and _is_uuid((case.path_parameters or {}).get("id")):
        pool = seed.disposable if case.method.upper() == "DELETE" else seed.ids
        case.path_parameters["id"] = (
            pool.get(f"{resource}/{match['action']}")
            or pool.get(resource)
            or seed.ids.get(resource)
        )
    if case.path.endswith("/diff/") and _is_uuid((case.query or {}).get("against")):
        case.query["against"] = seed.against[resource]
    if isinstance(case.body, dict):
        for name, value in seed.body_refs.items():
            if name in case.body and isinstance(case.body[name], type(value)):
                case.body[name] = value


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    # The seeded data is shared by one operation's examples on purpose (they may create more).
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
def test_api_conforms_to_its_schema(case, seed):
    _bind_to_seed(case, seed)
    case.call_and_validate(
        headers={"Authorization": f"Bearer {seed.key}"},
        checks=[not_a_server_error, response_schema_conformance],
    )

"""Property-based tests of the REST API against its own OpenAPI schema (schemathesis).

Schemathesis reads ``/api/schema/`` from the WSGI application in-process and, for every
operation, sends generated requests (schema examples, the coverage phase's boundary and
negative cases, then ``MAX_EXAMPLES`` fuzzed ones), authenticated with the personal token of a
product manager of a seeded team. Each response must not be a server error and must match the
schema for its documented status (errors included: the ``{"code", "message", "fields"}`` shape).

Nothing is excluded: every operation of the schema runs, the writes and deletes too.

To reach real objects rather than only 404s, a generated path ``id`` that is a well-formed UUID is
replaced by the id of a seeded object of the operation's resource (malformed ids are kept and
must give a 404), and the relations of a generated body (``owner_team``, ``prompt``, ``model``,
``dataset``) point at the seeded team and artifacts when present. Each operation is its own
pytest test with its own freshly seeded data.
"""

import re
import uuid
from dataclasses import dataclass, field

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from apps.accounts import services as accounts
from apps.accounts.roles import PRODUCT_MANAGER
from apps.catalog import services as catalog
from apps.catalog.models import Dataset, Model

from .factories import TeamFactory, artifact, member, product, prompt_with_versions

MAX_EXAMPLES = 20  # fuzzed examples per operation, on top of the examples and coverage phases

RESOURCE = re.compile(r"^/api/v1/(?P<resource>[a-z-]+)/\{id\}/")


@dataclass
class Seed:
    key: str
    team_slug: str
    ids: dict[str, str] = field(default_factory=dict)  # resource -> id for reads and writes
    disposable: dict[str, str] = field(default_factory=dict)  # resource -> id for DELETE
    body_refs: dict[str, str] = field(default_factory=dict)  # body field -> id or slug
    against: str = ""


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


@pytest.fixture
def seed(wsgi_in_test_transaction) -> Seed:
    """A team with a product manager and one object of every resource (some with versions)."""
    team = TeamFactory(slug="demo")
    pm = member(PRODUCT_MANAGER, team, username="pm")
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
        against=str(pv1.pk),
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
    match = RESOURCE.match(case.path)
    if match and _is_uuid((case.path_parameters or {}).get("id")):
        pool = seed.disposable if case.method.upper() == "DELETE" else seed.ids
        resource = match["resource"]
        case.path_parameters["id"] = pool.get(resource, seed.ids.get(resource))
    if case.path.endswith("/diff/") and _is_uuid((case.query or {}).get("against")):
        case.query["against"] = seed.against
    if isinstance(case.body, dict):
        for name, value in seed.body_refs.items():
            if name in case.body and isinstance(case.body[name], str):
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

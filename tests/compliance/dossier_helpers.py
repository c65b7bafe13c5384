"""A release with everything a dossier holds, made through the services.

``dossier_world()``: a product released at 1.0.0, then a change request proposing 1.1.0 (a new
prompt, a model version trained on a dataset version, a fallback model, a dataset version) with
an evaluation run of the proposed release (one case passes, one fails), a reviewer's signature,
implemented (1.1.0 is released); a published API following the product's release with two
plans; a developer's application subscribed to the free plan, with a key that was rotated; an
incident against 1.1.0; a provider holding a secret; a signed audit checkpoint.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import date

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.accounts.models import User
from apps.accounts.roles import ADMIN, AUDITOR, DEVELOPER, PRODUCT_MANAGER
from apps.audit.checkpoints import checkpoint_create
from apps.catalog import services as catalog
from apps.changes import services as changes
from apps.compliance.services import incident_file
from apps.evaluations.models import EvalRun
from apps.portal import services as portal
from apps.releases.models import Release
from tests.changes.helpers import PASSWORD, released, team_reviewer
from tests.evaluations.factories import case_dict
from tests.evaluations.run_helpers import drain, failing_case, started
from tests.factories import (
    Dataset,
    Model,
    artifact,
    member,
    model_version,
    prompt_with_versions,
)
from tests.factories import release as draft_release
from tests.gateway.factories import provider
from tests.portal.factories import builtin_provider
from tests.portal.service_factories import api as published_api
from tests.portal.service_factories import application, plan

PROVIDER_SECRET = "sk-provider-secret-never-in-a-dossier-7f3a9c"


def new_private_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def raw_b64(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def public_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture
def signing_key(settings) -> Ed25519PrivateKey:
    """A fresh audit signing key for the test (never a key file)."""
    key = new_private_key()
    settings.AUDIT_SIGNING_KEY = raw_b64(key)
    return key


@dataclass
class World:
    pm: User
    reviewer: User
    dev: User
    auditor: User
    outsider: User
    baseline: Release
    release: Release
    cr: object
    run: EvalRun
    api: object
    key_secret: str
    rotated_secret: str
    incident: object


def dossier_world(*, cases: list[dict] | None = None) -> World:
    pm = member(PRODUCT_MANAGER)
    reviewer = team_reviewer(pm)
    dev = member(DEVELOPER)
    auditor = member(AUDITOR)
    outsider = member(PRODUCT_MANAGER)
    builtin_provider()
    provider(member(ADMIN), secret=PROVIDER_SECRET)
    baseline = released(pm)
    team = baseline.product.owner_team
    tickets = catalog.dataset_version_create(
        actor=pm,
        dataset=artifact(pm, Dataset, team),
        uri="s3://plm-tests/tickets.jsonl",
        format="jsonl",
        sha256="ab" * 32,
        row_count=1200,
        source="support tickets 2024",
        licence="CC-BY-4.0",
        pii_class="pseudonymised",
        retention_until=date(2031, 1, 31),
    )
    training = catalog.dataset_version_create(
        actor=pm,
        dataset=artifact(pm, Dataset, team),
        uri="s3://plm-tests/train.jsonl",
        format="jsonl",
        sha256="cd" * 32,
        source="public FAQ",
        licence="MIT",
    )
    mv = catalog.model_version_create(
        actor=pm,
        model=artifact(pm, Model, team),
        provider="builtin",
        provider_model="echo-1",
        training_datasets=[training],
        model_card={"intended_use": "support answers", "limitations": "English only"},
    )
    fallback = model_version(pm, team)
    _, (pv,) = prompt_with_versions(pm, "Proposed prompt.", team=team)
    proposed = draft_release(
        pm,
        baseline.product,
        "1.1.0",
        prompt_version=pv,
        model_version=mv,
        dataset_versions=[tickets],
        settings={"fallback": [str(fallback.pk)]},
    )
    cr = changes.change_request_submit(
        actor=pm,
        cr=changes.change_request_create(
            actor=pm,
            product=baseline.product,
            title="Friendlier prompt",
            rationale="Customers found it curt.",
            proposed=proposed,
        ),
    )
    run = started(pm, cr.proposed, cases=cases or [case_dict("greeting"), failing_case("farewell")])
    drain(run)
    cr, _ = changes.change_request_approve(
        actor=reviewer, cr=cr, password=PASSWORD, comment="Reads well; evaluation attached."
    )
    cr = changes.change_request_implement(actor=pm, cr=cr)
    release = Release.objects.get(pk=cr.proposed_id)
    api = published_api(pm, release)
    free = plan(pm, api, slug="free", requests_per_minute=30, tokens_per_month=100_000)
    plan(pm, api, slug="pro", approval=True, requests_per_minute=600)
    app = application(dev)
    portal.subscription_request(actor=dev, application=app, plan=free, justification="tests")
    new = portal.key_create(actor=dev, application=app, name="ci")
    rotated = portal.key_rotate(actor=dev, key=new.key)
    incident = incident_file(
        actor=pm,
        product=release.product,
        release=release,
        title="Curt answers",
        severity="sev3",
        description="Some answers were curt.",
        actions_taken="Prompt reviewed.",
    )
    checkpoint_create(force=True)
    run.refresh_from_db()
    return World(
        pm=pm,
        reviewer=reviewer,
        dev=dev,
        auditor=auditor,
        outsider=outsider,
        baseline=baseline,
        release=release,
        cr=cr,
        run=run,
        api=api,
        key_secret=new.secret,
        rotated_secret=rotated.secret,
        incident=incident,
    )


__all__ = ["PROVIDER_SECRET", "World", "dossier_world", "public_pem", "signing_key"]

"""The release dossier: its files and their content, the signed manifest, the ZIP, the audit
event, the API download, the HTML page and its query count."""

import hashlib
import io
import json
import zipfile
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from apps.audit.checkpoints import checkpoint_latest
from apps.audit.ed25519 import checkpoint_payload, verify_signature
from apps.audit.models import AuditCheckpoint, AuditEvent
from apps.compliance.dossier import dossier_build, dossier_collect
from apps.compliance.dossier.collect import PURGED_OUTPUT
from apps.compliance.retention import purge_payloads, retention_days
from apps.portal.models import APIKey
from tests.changes.helpers import released
from tests.compliance.dossier_helpers import (
    PROVIDER_SECRET,
    dossier_world,
    public_pem,
    signing_key,  # noqa: F401 (fixture)
)
from tests.evaluations.factories import case_dict
from tests.factories import member
from tests.portal.service_factories import application

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(signing_key):  # noqa: F811
    return dossier_world()


def _json(dossier, name):
    return json.loads(dossier.files[name])


def _slug_files(world):
    rel = world.release
    fallback = rel.settings["fallback"][0]
    from apps.catalog.models import ModelVersion

    fb = ModelVersion.objects.select_related("model").get(pk=fallback)
    mv = rel.model_version
    training = mv.lineage.get().dataset_version
    tickets = rel.dataset_links.get().dataset_version
    pv, old = rel.prompt_version, world.baseline.prompt_version
    return {
        "manifest.json",
        "manifest.sig",
        "public-key.pem",
        "README.txt",
        "inventory.json",
        f"model-cards/{mv.model.slug}-v{mv.version}.json",
        f"model-cards/{mv.model.slug}-v{mv.version}.md",
        f"model-cards/{fb.model.slug}-v{fb.version}.json",
        f"model-cards/{fb.model.slug}-v{fb.version}.md",
        f"datasheets/{tickets.dataset.slug}-v{tickets.version}.json",
        f"datasheets/{tickets.dataset.slug}-v{tickets.version}.md",
        f"datasheets/{training.dataset.slug}-v{training.version}.json",
        f"datasheets/{training.dataset.slug}-v{training.version}.md",
        f"prompts/{pv.prompt.slug}-v{pv.version}.json",
        f"prompts/{old.prompt.slug}-v{old.version}.json",
        "prompts/diff-from-1.0.0.txt",
        "evaluations/runs.json",
        f"evaluations/{world.run.pk}-results.json",
        f"changes/{world.cr.pk}.json",
        "effectivity.json",
        "apis.json",
        "access-events.json",
        "incidents.json",
    }


def test_every_file_is_present_and_listed(world):
    dossier = dossier_build(actor=world.auditor, release=world.release)
    assert set(dossier.files) == _slug_files(world)
    with zipfile.ZipFile(io.BytesIO(dossier.to_zip())) as archive:
        assert set(archive.namelist()) == set(dossier.files)
        assert archive.namelist()[0] == "manifest.json"
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    manifest = _json(dossier, "manifest.json")
    assert set(manifest["files"]) == set(dossier.files) - {"manifest.json", "manifest.sig"}
    assert dossier.filename == f"dossier-{world.release.product.slug}-1.1.0.zip"


def test_inventory_model_cards_datasheets_and_prompts(world):
    dossier = dossier_build(actor=world.auditor, release=world.release)
    rel = world.release
    product = rel.product
    inventory = _json(dossier, "inventory.json")
    assert inventory["product"]["owner_team"]["slug"] == product.owner_team.slug
    assert inventory["product"]["risk_class"] == product.risk_class
    assert inventory["product"]["lifecycle_stage"] == product.stage
    assert inventory["product"]["intended_use"] == product.intended_use
    assert inventory["release"]["fingerprint"] == rel.fingerprint
    assert inventory["release"]["status"] == "released"
    assert inventory["lifecycle_history"][0]["verb"] == "product.created"
    mv = rel.model_version
    card = _json(dossier, f"model-cards/{mv.model.slug}-v{mv.version}.json")
    assert card["role"] == "primary"
    assert card["model_card"] == {"intended_use": "support answers", "limitations": "English only"}
    assert card["lineage"][0]["purpose"] == "training"
    assert card["lineage"][0]["sha256"] == "cd" * 32
    md = dossier.files[f"model-cards/{mv.model.slug}-v{mv.version}.md"].decode()
    assert "English only" in md and "Lineage" in md
    tickets = rel.dataset_links.get().dataset_version
    sheet = _json(dossier, f"datasheets/{tickets.dataset.slug}-v{tickets.version}.json")
    assert (sheet["sha256"], sheet["source"], sheet["licence"]) == (
        "ab" * 32,
        "support tickets 2024",
        "CC-BY-4.0",
    )
    assert (sheet["pii_class"], sheet["retention_until"]) == ("pseudonymised", "2031-01-31")
    assert sheet["used_as"] == ["release 1.1.0"]
    pv = rel.prompt_version
    prompt = _json(dossier, f"prompts/{pv.prompt.slug}-v{pv.version}.json")
    assert prompt["messages"] == pv.messages
    assert prompt["content_hash"] == pv.content_hash
    diff = dossier.files["prompts/diff-from-1.0.0.txt"].decode()
    assert "-Baseline prompt." in diff
    assert "+Proposed prompt." in diff


def test_evaluations_changes_effectivity_apis_access_and_incidents(world):
    dossier = dossier_build(actor=world.auditor, release=world.release)
    (run,) = _json(dossier, "evaluations/runs.json")
    assert (run["id"], run["state"], run["passed"], run["failed"]) == (
        str(world.run.pk),
        "succeeded",
        1,
        1,
    )
    assert run["pass_rate"] == 0.5
    results = _json(dossier, f"evaluations/{world.run.pk}-results.json")["results"]
    assert [(r["case"], r["passed"]) for r in results] == [("greeting", True), ("farewell", False)]
    assert results[0]["checks"][0]["passed"] is True
    assert "greeting" in results[0]["output"]
    assert results[0]["output_purged"] is False

    cr = _json(dossier, f"changes/{world.cr.pk}.json")
    assert cr["state"] == "implemented"
    assert cr["baseline"]["version"] == "1.0.0"
    (approval,) = cr["approvals"]
    assert approval["reviewer"] == world.reviewer.username
    assert (approval["role"], approval["decision"]) == ("reviewer", "approve")
    assert approval["comment"] == "Reads well; evaluation attached."
    assert approval["fingerprint"] == world.cr.fingerprint
    assert approval["valid_for_final_content"] is True
    assert approval["signed_at"]
    assert "evidence" in approval
    assert [h["verb"] for h in cr["history"]][-1] == "change_request.implemented"

    periods = [row for row in _json(dossier, "effectivity.json") if row["kind"] == "period"]
    assert [(p["release"]["version"], p["this_release"]) for p in periods] == [
        ("1.0.0", False),
        ("1.1.0", True),
    ]
    (api,) = _json(dossier, "apis.json")
    assert api["slug"] == world.api.slug
    assert [(p["slug"], p["requests_per_minute"], p["tokens_per_month"]) for p in api["plans"]] == [
        ("free", 30, 100_000),
        ("pro", 600, None),
    ]
    assert api["plans"][1]["approval_required"] is True
    assert [s["state"] for s in api["subscriptions"]] == ["active"]
    access = _json(dossier, "access-events.json")
    assert [e["verb"] for e in access] == ["subscription.requested", "key.created", "key.rotated"]
    keys = APIKey.objects.order_by("created_at")
    assert access[1]["prefix"] == keys[0].prefix
    assert access[2]["after"]["new_prefix"] == keys[1].prefix
    assert all(e["by"] == world.dev.username for e in access)
    (incident,) = _json(dossier, "incidents.json")
    assert (incident["title"], incident["severity"], incident["filed_by"]) == (
        "Curt answers",
        "sev3",
        world.pm.username,
    )
    assert "How to verify" in dossier.files["README.txt"].decode()


def test_no_secret_reaches_the_dossier(world):
    """GIVEN an API key (rotated) and a provider secret WHEN the dossier is exported THEN
    neither the keys' secrets nor their hashes nor the provider's secret are in the ZIP."""
    dossier = dossier_build(actor=world.auditor, release=world.release)
    data = dossier.to_zip()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        everything = data + b"".join(archive.read(n) for n in archive.namelist())
    hashes = [k.key_hash for k in APIKey.objects.all()]
    for secret in [world.key_secret, world.rotated_secret, PROVIDER_SECRET, *hashes]:
        assert secret.encode() not in everything


def test_manifest_hashes_signature_and_checkpoint(world, signing_key):  # noqa: F811
    dossier = dossier_build(actor=world.auditor, release=world.release)
    manifest = _json(dossier, "manifest.json")
    assert manifest["format"] == "plm-dossier/v1"
    assert manifest["release"] == {
        "id": str(world.release.pk),
        "version": "1.1.0",
        "fingerprint": world.release.fingerprint,
        "status": "released",
        "product": world.release.product.slug,
        "product_id": str(world.release.product_id),
    }
    assert manifest["generated_by"] == world.auditor.username
    for name, digest in manifest["files"].items():
        assert hashlib.sha256(dossier.files[name]).hexdigest() == digest
    pem = public_pem(signing_key)
    assert dossier.files["public-key.pem"].decode() == pem
    signature = dossier.files["manifest.sig"].decode().strip()
    assert verify_signature(pem, dossier.files["manifest.json"], signature)
    latest = checkpoint_latest()
    cp = manifest["checkpoint"]
    assert (cp["seq"], cp["head_hash"], cp["key_id"]) == (
        latest.seq,
        latest.head_hash,
        latest.key_id,
    )
    assert manifest["key_id"] == latest.key_id
    payload = checkpoint_payload(cp["seq"], cp["head_hash"], cp["at"], cp["key_id"])
    assert verify_signature(pem, payload, cp["signature"])


def test_exports_are_reproducible_but_for_the_manifest(world):
    first = dossier_build(actor=world.auditor, release=world.release)
    second = dossier_build(actor=world.pm, release=world.release)
    same = set(first.files) - {"manifest.json", "manifest.sig"}
    assert all(first.files[n] == second.files[n] for n in same)
    assert _json(first, "manifest.json")["files"] == _json(second, "manifest.json")["files"]


def test_every_export_is_audited(world):
    before = AuditEvent.objects.filter(verb="release.dossier_exported").count()
    dossier = dossier_build(actor=world.auditor, release=world.release)
    event = AuditEvent.objects.filter(verb="release.dossier_exported").order_by("-seq").first()
    assert AuditEvent.objects.filter(verb="release.dossier_exported").count() == before + 1
    assert event.product_id == world.release.product_id
    assert event.object_id == str(world.release.pk)
    assert event.actor_username == world.auditor.username
    assert event.after["manifest_sha256"] == hashlib.sha256(dossier.manifest).hexdigest()


def test_a_first_release_says_so(signing_key):  # noqa: F811
    pm = member("product_manager")
    first = released(pm)
    dossier = dossier_build(actor=pm, release=first)
    assert "prompts/diff-first-release.txt" in dossier.files
    assert "First release" in dossier.files["prompts/diff-first-release.txt"].decode()
    assert _json(dossier, "evaluations/runs.json") == []
    assert _json(dossier, "apis.json") == []
    assert not [n for n in dossier.files if n.startswith("changes/")]


def test_without_a_checkpoint_the_manifest_says_null(signing_key):  # noqa: F811
    """The one fallback: no audit checkpoint signed yet (the manifest's checkpoint is null and
    the verifier notes it)."""
    from apps.compliance.verify_dossier import verify

    pm = member("product_manager")
    first = released(pm)
    assert not AuditCheckpoint.objects.exists()  # fewer events than AUDIT_CHECKPOINT_EVERY
    dossier = dossier_build(actor=pm, release=first)
    assert _json(dossier, "manifest.json")["checkpoint"] is None
    report = verify(dossier.to_zip(), public_pem(signing_key))
    assert report.intact
    assert any("not anchored" in note for note in report.notes)


def test_purged_outputs_are_said_to_be(world):
    """GIVEN the payload purge ran past the results WHEN the dossier is exported THEN each
    result says its output was purged (and keeps its figures)."""
    purge_payloads(now=timezone.now() + timedelta(days=retention_days() + 1))
    dossier = dossier_build(actor=world.auditor, release=world.release)
    results = _json(dossier, f"evaluations/{world.run.pk}-results.json")["results"]
    assert [r["output_purged"] for r in results] == [True, True]
    assert {r["output"] for r in results} == {PURGED_OUTPUT}
    assert [r["passed"] for r in results] == [True, False]


def _queries(release, actor) -> int:
    with CaptureQueriesContext(connection) as ctx:
        dossier_build(actor=actor, release=release)
    return len(ctx.captured_queries)


def test_query_count_does_not_grow_with_the_rows(signing_key):  # noqa: F811
    """GIVEN two dossiers, one with 2 eval results, the other with 40 results and more
    subscriptions and keys WHEN each is built THEN both take the same number of queries."""
    from apps.portal import services as portal

    small = dossier_world()
    big = dossier_world(cases=[case_dict(f"case-{i}") for i in range(40)])
    plan = big.api.plans.get(slug="free")
    for _ in range(3):
        other = member("developer")
        app = application(other)
        portal.subscription_request(actor=other, application=app, plan=plan)
        portal.key_create(actor=other, application=app, name="k")
    assert len(dossier_collect(release=big.release).results[str(big.run.pk)]) == 40
    counts = (_queries(small.release, small.auditor), _queries(big.release, big.auditor))
    assert counts[0] == counts[1]
    assert counts[0] <= 32


# --- the API and the pages ---------------------------------------------------------------------


def _url(release):
    return f"/api/v1/releases/{release.pk}/dossier/"


def test_api_downloads_the_zip_for_the_owner_and_an_auditor(world, client_for):
    for user in (world.pm, world.auditor):
        response = client_for(user).get(_url(world.release), HTTP_ACCEPT="application/zip")
        assert response.status_code == 200
        assert response["Content-Type"] == "application/zip"
        name = f"dossier-{world.release.product.slug}-1.1.0.zip"
        assert response["Content-Disposition"] == f'attachment; filename="{name}"'
        with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
            assert "manifest.json" in archive.namelist()
    assert reverse("api-release-dossier", kwargs={"pk": world.release.pk}) == _url(world.release)


def test_api_is_404_out_of_scope_and_401_anonymous(world, client_for, api_client):
    response = client_for(world.outsider).get(_url(world.release))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert api_client.get(_url(world.release)).status_code == 401
    events = AuditEvent.objects.filter(verb="release.dossier_exported")
    assert not events.exists()


def test_the_page_renders_every_section(world, client):
    client.force_login(world.auditor)
    response = client.get(reverse("release_dossier", kwargs={"pk": world.release.pk}))
    assert response.status_code == 200
    html = response.content.decode()
    for anchor in (
        "inventory",
        "model-cards",
        "datasheets",
        "prompts",
        "evaluations",
        "changes",
        "effectivity",
        "apis",
        "access",
        "incidents",
        "files",
    ):
        assert f'id="{anchor}"' in html
    for text in (
        world.release.product.owner_team.name,
        "English only",
        "support tickets 2024",
        "+Proposed prompt.",
        "farewell",
        world.reviewer.username,
        "Reads well; evaluation attached.",
        world.api.slug,
        "key.rotated",
        "Curt answers",
        "@media print",
        reverse("release_dossier_zip", kwargs={"pk": world.release.pk}),
    ):
        assert text in html, text
    assert world.key_secret not in html
    assert not AuditEvent.objects.filter(verb="release.dossier_exported").exists()


def test_the_zip_download_and_the_release_page_link(world, client):
    client.force_login(world.pm)
    page = client.get(reverse("release_detail", kwargs={"pk": world.release.pk}))
    assert reverse("release_dossier", kwargs={"pk": world.release.pk}) in page.content.decode()
    url = reverse("release_dossier_zip", kwargs={"pk": world.release.pk})
    assert url in page.content.decode()
    response = client.get(url)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith('attachment; filename="dossier-')
    assert AuditEvent.objects.filter(verb="release.dossier_exported").count() == 1


def test_pages_are_404_out_of_scope(world, client):
    client.force_login(world.outsider)
    for name in ("release_dossier", "release_dossier_zip"):
        assert client.get(reverse(name, kwargs={"pk": world.release.pk})).status_code == 404

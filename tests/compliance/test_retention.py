"""Retention: payload purge, its floor and audit event; what is never deleted."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.admin.sites import site
from django.core.management import call_command
from django.db import transaction
from django.test import RequestFactory
from django.utils import timezone

from apps.accounts.roles import PRODUCT_MANAGER
from apps.audit.models import AuditEvent
from apps.audit.services import audit_record
from apps.catalog.models import Product, PromptTemplateVersion
from apps.catalog.services import version_delete
from apps.compliance.retention import check_retention_setting, purge_payloads, retention_days
from apps.core.exceptions import ApplicationError
from apps.gateway.models import ProviderCall
from apps.gateway.pipeline import provider_call_record
from tests.changes.helpers import released
from tests.factories import member, product, prompt_with_versions

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm(db):
    return member(PRODUCT_MANAGER)


def _call(age_days: float, **kw) -> ProviderCall:
    call = provider_call_record(
        provider=None,
        provider_model="echo-1",
        attempts=1,
        outcome="ok",
        tokens_in=12,
        tokens_out=34,
        cost=Decimal("0.5"),
        latency_ms=77,
        request_messages=[{"role": "user", "content": "my secret"}],
        response_text="the answer",
        **kw,
    )
    ProviderCall.objects.filter(pk=call.pk).update(
        created_at=timezone.now() - dt.timedelta(days=age_days)
    )
    return call


def test_floor_is_enforced(settings):
    settings.PAYLOAD_RETENTION_DAYS = 90
    (error,) = check_retention_setting()
    assert error.id == "compliance.E001"
    assert retention_days() == 180  # clamped, should the check be silenced
    settings.PAYLOAD_RETENTION_DAYS = 365
    assert check_retention_setting() == []
    assert retention_days() == 365


def test_purge_only_older_payloads_keeps_metadata_and_audits(settings):
    settings.PAYLOAD_RETENTION_DAYS = 200
    old, young = _call(201), _call(199)
    report = purge_payloads()
    assert report.counts["provider_calls"] == 1
    old.refresh_from_db()
    young.refresh_from_db()
    assert old.request_messages is None and old.response_text == ""
    assert old.payload_purged_at is not None
    assert (old.tokens_in, old.tokens_out, old.cost, old.latency_ms, old.outcome) == (
        12,
        34,
        Decimal("0.5"),
        77,
        "ok",
    )
    assert young.response_text == "the answer" and young.payload_purged_at is None
    event = AuditEvent.objects.get(seq=report.audit_seq)
    assert event.verb == "payloads.purged"
    assert event.after["counts"]["provider_calls"] == 1
    assert event.after["retention_days"] == 200 and event.after["cutoff"]
    again = purge_payloads()  # idempotent
    assert again.total == 0


def test_dry_run_changes_nothing(settings):
    old = _call(400)
    seq = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
    report = purge_payloads(dry_run=True)
    assert report.counts["provider_calls"] == 1 and report.audit_seq is None
    old.refresh_from_db()
    assert old.response_text == "the answer"
    assert not AuditEvent.objects.filter(seq__gt=seq).exists()


def test_command(capsys):
    _call(400)
    call_command("purge_payloads", "--dry-run")
    assert "would clear provider_calls 1" in capsys.readouterr().out
    call_command("purge_payloads")
    assert "cleared provider_calls 1" in capsys.readouterr().out


def test_playground_batch_and_eval_texts_are_purged(pm):
    from apps.playground.models import BatchItem, BatchRun, PlaygroundRun

    team = pm.memberships.first().team
    run = PlaygroundRun.objects.create(
        team=team, output="answer", messages=[{"role": "user", "content": "q"}], tokens_in=5
    )
    batch = BatchRun.objects.create(team=team)
    item = BatchItem.objects.create(batch=batch, index=0, output="x", variables={"q": "secret"})
    old = timezone.now() - dt.timedelta(days=500)
    PlaygroundRun.objects.filter(pk=run.pk).update(created_at=old)
    BatchRun.objects.filter(pk=batch.pk).update(created_at=old)
    report = purge_payloads()
    assert report.counts["playground_runs"] == 1 and report.counts["batch_items"] == 1
    run.refresh_from_db()
    item.refresh_from_db()
    assert (run.output, run.messages, run.tokens_in) == ("", [], 5)
    assert (item.output, item.variables) == ("", {})
    assert purge_payloads().total == 0


def test_gateway_records_payloads_of_new_calls():
    """GIVEN the built-in provider WHEN a call goes through the pipeline THEN its row keeps what
    was sent and the answer's text."""
    from apps.gateway.pipeline import call_chat_sync
    from tests.gateway.factories import provider

    prov = provider(kind="builtin", base_url="")
    messages = [{"role": "user", "content": "hello there"}]
    result = call_chat_sync(
        provider=prov,
        provider_model="echo-1",
        messages=messages,
        parameters={},
        timeout_seconds=5,
        max_retries=0,
    )
    call = ProviderCall.objects.get(pk=result.call_id)
    assert call.request_messages == messages
    assert call.response_text == result.output and result.output
    assert call.payload_purged_at is None


# --- never deleted --------------------------------------------------------------------------


def test_audit_events_refuse_delete():
    event = audit_record(actor=None, verb="test.event")
    with pytest.raises(ApplicationError):
        event.delete()
    with pytest.raises(ApplicationError):
        AuditEvent.objects.all().delete()
    with pytest.raises(ApplicationError):
        AuditEvent.objects.filter(seq=event.seq).delete()
    assert AuditEvent.objects.filter(seq=event.seq).exists()


def test_deleting_a_governed_object_keeps_its_history(pm):
    _, (pv,) = prompt_with_versions(pm, "Unused.")
    pk = pv.pk
    version_delete(actor=pm, version=pv)
    assert not PromptTemplateVersion.objects.filter(pk=pk).exists()
    types = list(PromptTemplateVersion.history.filter(id=pk).values_list("history_type", flat=True))
    assert sorted(types) == ["+", "-"]
    with pytest.raises(ApplicationError), transaction.atomic():
        PromptTemplateVersion.history.filter(id=pk).delete()
    with pytest.raises(ApplicationError), transaction.atomic():
        PromptTemplateVersion.history.filter(id=pk).first().delete()
    assert PromptTemplateVersion.history.filter(id=pk).count() == 2


def test_product_with_a_release_is_never_deleted(pm, client_for):
    rel = released(pm)
    prod = rel.product
    with pytest.raises(Exception) as exc, transaction.atomic():  # PROTECT, or the guard
        Product.objects.get(pk=prod.pk).delete()
    assert "release" in str(exc.value).lower() or exc.typename == "ProtectedError"
    assert Product.objects.filter(pk=prod.pk).exists()
    # admin: no delete permission
    admin_user = member("admin", prod.owner_team, is_superuser=True, is_staff=True)
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    model_admin = site._registry[Product]
    assert model_admin.has_delete_permission(request, prod) is False
    bare = product(pm)
    assert model_admin.has_delete_permission(request, bare) is True
    # API: 405
    response = client_for(pm).delete(f"/api/v1/products/{prod.pk}/")
    assert response.status_code == 405


def test_product_that_had_a_release_is_never_deleted(pm):
    """GIVEN a product whose only (draft) release was deleted WHEN it is deleted THEN refused:
    the release's history shows it had one."""
    from tests.factories import release

    prod = product(pm)
    r = release(pm, prod)
    from apps.releases.models import Release

    Release.history.filter(id=r.pk).exists()  # its history stays after it is gone
    ReleaseDataset = Release.dataset_versions.through
    ReleaseDataset._base_manager.filter(release_id=r.pk)._raw_delete(
        ReleaseDataset._base_manager.db
    )
    Release._base_manager.filter(pk=r.pk)._raw_delete(Release._base_manager.db)
    with pytest.raises(ApplicationError) as exc, transaction.atomic():
        Product.objects.get(pk=prod.pk).delete()
    assert exc.value.status == 409

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.catalog.services import version_delete
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.releases import selectors
from apps.releases import services as releases
from apps.releases.models import Release
from tests.factories import member, model_version, product, prompt_with_versions, release

pytestmark = pytest.mark.django_db


@pytest.fixture
def pm():
    return member("product_manager")


def test_release_bundles_versions_with_a_fingerprint(pm):
    r = release(pm, settings={"cache": {"mode": "exact", "ttl_seconds": 60}})
    assert r.status == "draft"
    assert len(r.fingerprint) == 64
    assert r.settings["cache"] == {"mode": "exact", "ttl_seconds": 60}
    assert r.settings["timeout_seconds"] == 30
    assert AuditEvent.objects.filter(verb="release.created", object_id=str(r.pk)).count() == 1


def test_fingerprint_follows_content_not_identity(pm):
    p = product(pm)
    _, (pv,) = prompt_with_versions(pm, "Same", team=p.owner_team)
    mv = model_version(pm, p.owner_team)
    a = release(pm, p, "1.0.0", prompt_version=pv, model_version=mv)
    b = release(pm, p, "1.0.1", prompt_version=pv, model_version=mv)
    assert a.fingerprint == b.fingerprint
    c = release(pm, p, "1.0.2", prompt_version=pv, model_version=mv, settings={"max_tokens": 5})
    assert c.fingerprint != a.fingerprint


def test_draft_edit_changes_the_fingerprint_and_is_audited(pm):
    r = release(pm)
    before = r.fingerprint
    _, (pv2,) = prompt_with_versions(pm, "New text", team=r.product.owner_team)
    r = releases.release_update(actor=pm, release=r, prompt_version=pv2)
    assert r.fingerprint != before
    event = AuditEvent.objects.get(verb="release.updated")
    assert set(event.after) == {"prompt_version", "fingerprint"}


def test_submitted_release_is_frozen(pm):
    r = release(pm)
    r = releases.release_freeze(actor=pm, release=r)
    assert r.status == "candidate"
    assert r.frozen_at is not None
    with pytest.raises(Conflict) as exc:
        releases.release_update(actor=pm, release=r, notes="sneaky")
    assert exc.value.code == "frozen"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"cache": {"mode": "fuzzy"}}, "settings.cache"),
        ({"cache": {"mode": "exact", "ttl_seconds": 0}}, "settings.cache.ttl_seconds"),
        ({"timeout_seconds": -1}, "settings.timeout_seconds"),
        ({"max_retries": 1.5}, "settings.max_retries"),
        ({"fallback": ["nope"]}, "settings.fallback[0]"),
        ({"colour": "blue"}, "settings"),
        ("x", "settings"),
    ],
)
def test_bad_settings_are_clear(pm, raw, field):
    with pytest.raises(ApplicationError) as exc:
        release(pm, settings=raw)
    assert field in exc.value.extra


def test_fallback_chain_is_validated_and_fingerprinted(pm):
    p = product(pm)
    primary = model_version(pm, p.owner_team)
    backup = model_version(pm, p.owner_team, provider_model="echo-2")
    r = release(pm, p, model_version=primary, settings={"fallback": [str(backup.pk)]})
    assert r.settings["fallback"] == [str(backup.pk)]
    with pytest.raises(ApplicationError):
        release(pm, p, "2.0.0", model_version=primary, settings={"fallback": [str(primary.pk)]})
    other_team = model_version(member("product_manager"))
    with pytest.raises(ApplicationError):
        release(pm, p, "2.0.1", model_version=primary, settings={"fallback": [str(other_team.pk)]})


def test_version_must_be_semver_and_unique(pm):
    p = product(pm)
    release(pm, p, "1.0.0")
    with pytest.raises(ApplicationError):
        release(pm, p, "v1")
    with pytest.raises(Conflict):
        release(pm, p, "1.0.0")


def test_parts_must_come_from_the_team_and_not_be_deprecated(pm):
    from apps.catalog.services import version_deprecate

    p = product(pm)
    foreign = prompt_with_versions(member("product_manager"), "Theirs")[1][0]
    with pytest.raises(ApplicationError):
        release(pm, p, prompt_version=foreign)
    _, (pv,) = prompt_with_versions(pm, "Old", team=p.owner_team)
    version_deprecate(actor=pm, version=pv)
    pv.refresh_from_db()
    with pytest.raises(ApplicationError) as exc:
        release(pm, p, prompt_version=pv)
    assert "deprecated" in exc.value.message


def test_only_the_team_may_create_releases(pm):
    p = product(pm)
    reviewer = member("reviewer", p.owner_team)
    with pytest.raises(Forbidden):
        release(reviewer, p)


def test_releasing_deprecates_the_previous_one_and_records_effectivity(pm):
    p = product(pm)
    first = releases.release_freeze(actor=pm, release=release(pm, p, "1.0.0"))
    first = releases.release_release(actor=pm, release=first)
    t_first = timezone.now()
    second = releases.release_freeze(actor=pm, release=release(pm, p, "1.1.0", "Better."))
    second = releases.release_release(actor=pm, release=second)
    first.refresh_from_db()
    assert (first.status, second.status) == ("deprecated", "released")
    assert first.effective_to == second.effective_from
    assert selectors.release_live_at(product=p, at=t_first) == first
    assert selectors.release_live_at(product=p, at=timezone.now()) == second
    assert selectors.release_live_at(product=p, at=first.effective_from - timedelta(1)) is None
    assert selectors.release_current(product=p) == second


def test_only_a_candidate_can_be_released(pm):
    r = release(pm)
    with pytest.raises(Conflict):
        releases.release_release(actor=pm, release=r)


def test_database_refuses_two_released_releases(pm):
    p = product(pm)
    a = releases.release_release(
        actor=pm, release=releases.release_freeze(actor=pm, release=release(pm, p, "1.0.0"))
    )
    b = release(pm, p, "1.0.1")
    b.status = "released"
    with pytest.raises(IntegrityError), transaction.atomic():
        Release.save(b)  # straight to the database, past the services
    assert a.status == "released"


def test_versions_in_a_release_cannot_be_deleted(pm):
    r = release(pm)
    with pytest.raises(Conflict) as exc:
        version_delete(actor=pm, version=r.prompt_version)
    assert "releases" in exc.value.message


def test_release_list_is_scoped(pm):
    r = release(pm)
    outsider = member("product_manager")
    assert list(selectors.release_list_for(user=pm)) == [r]
    assert list(selectors.release_list_for(user=outsider)) == []
    assert list(selectors.release_list_for(user=member("auditor"))) == [r]

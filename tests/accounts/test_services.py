from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.accounts import services
from apps.accounts.models import PersonalAccessToken
from apps.audit.models import AuditEvent
from apps.catalog import selectors
from apps.core.exceptions import ApplicationError, Forbidden
from tests.factories import TeamFactory, UserFactory, member, product

pytestmark = pytest.mark.django_db


def test_token_is_returned_once_and_stored_as_hash():
    user = UserFactory()
    new = services.token_create(actor=user, user=user, name="ci")
    stored = PersonalAccessToken.objects.get(pk=new.token.pk)
    assert new.key.startswith(f"plm_{stored.prefix}_")
    assert new.key not in stored.token_hash
    assert len(stored.token_hash) == 64
    assert services.token_authenticate(key=new.key).pk == stored.pk
    assert AuditEvent.objects.filter(verb="token.created", object_id=str(stored.pk)).count() == 1


def test_revoked_and_expired_tokens_do_not_authenticate():
    user = UserFactory()
    new = services.token_create(actor=user, user=user, name="ci")
    services.token_revoke(actor=user, token=new.token)
    assert services.token_authenticate(key=new.key) is None
    assert AuditEvent.objects.filter(verb="token.revoked").count() == 1
    with pytest.raises(ApplicationError):
        services.token_revoke(actor=user, token=new.token)

    other = services.token_create(actor=user, user=user, name="short", days=1)
    PersonalAccessToken.objects.filter(pk=other.token.pk).update(
        last_used_at=timezone.now()
    )  # housekeeping fields may be bulk-updated
    token = PersonalAccessToken.objects.get(pk=other.token.pk)
    token.expires_at = timezone.now() - timedelta(seconds=1)
    token.save()
    assert services.token_authenticate(key=other.key) is None
    assert services.token_authenticate(key="plm_nothing_here") is None
    assert services.token_authenticate(key="garbage") is None


def test_cannot_create_or_revoke_tokens_for_someone_else():
    alice, bob = UserFactory(), UserFactory()
    with pytest.raises(Forbidden):
        services.token_create(actor=alice, user=bob, name="x")
    bobs = services.token_create(actor=bob, user=bob, name="x")
    with pytest.raises(Forbidden):
        services.token_revoke(actor=alice, token=bobs.token)


def test_token_expiry_must_be_in_the_future():
    user = UserFactory()
    with pytest.raises(ApplicationError) as exc:
        services.token_create(
            actor=user, user=user, name="x", expires_at=timezone.now() - timedelta(days=1)
        )
    assert "expires_at" in exc.value.extra


def test_create_token_command_prints_token_last(capsys):
    user = UserFactory()
    call_command("create_token", user.username)
    last_word = capsys.readouterr().out.strip().splitlines()[-1].split()[-1]
    assert services.token_authenticate(key=last_word).user == user


def test_team_decides_the_objects():
    """GIVEN two teams WHEN each creates a product THEN each sees only its own."""
    team_a, team_b = TeamFactory(), TeamFactory()
    pm_a, pm_b = member("product_manager", team_a), member("product_manager", team_b)
    pa, pb = product(pm_a), product(pm_b)
    reviewer_a = member("reviewer", team_a)
    assert list(selectors.product_list_for(user=pm_a)) == [pa]
    assert list(selectors.product_list_for(user=reviewer_a)) == [pa]
    assert list(selectors.product_list_for(user=pm_b)) == [pb]


def test_auditors_read_everything():
    pm_a, pm_b = member("product_manager"), member("product_manager")
    pa, pb = product(pm_a), product(pm_b)
    auditor = member("auditor")
    assert set(selectors.product_list_for(user=auditor)) == {pa, pb}


def test_role_decides_the_verbs():
    team = TeamFactory()
    pm = member("product_manager", team)
    p = product(pm)
    reviewer = member("reviewer", team)
    auditor = member("auditor", team)
    assert pm.has_perm("catalog.change_product", p)
    assert not reviewer.has_perm("catalog.change_product", p)
    assert reviewer.has_perm("catalog.view_product", p)
    assert not auditor.has_perm("catalog.change_product", p)


def test_membership_grant_and_removal_are_audited():
    team = TeamFactory()
    user = UserFactory()
    membership = services.membership_add(actor=None, user=user, team=team, role="reviewer")
    assert AuditEvent.objects.filter(verb="permission.granted", object_id=str(membership.pk))
    services.membership_remove(actor=None, membership=membership)
    assert AuditEvent.objects.filter(verb="permission.removed").count() == 1
    assert not user.groups.filter(name=f"team:{team.slug}:reviewer").exists()


def test_only_admins_manage_memberships():
    team = TeamFactory()
    pm = member("product_manager", team)
    with pytest.raises(Forbidden):
        services.membership_add(actor=pm, user=UserFactory(), team=team, role="admin")
    with pytest.raises(ApplicationError):
        services.membership_add(actor=None, user=UserFactory(), team=team, role="overlord")


def test_logins_and_failed_logins_are_audited(client):
    from tests.factories import PASSWORD

    user = UserFactory()
    client.post("/login/", {"username": user.username, "password": "wrong"})
    client.post("/login/", {"username": user.username, "password": PASSWORD})
    verbs = list(AuditEvent.objects.order_by("seq").values_list("verb", flat=True))
    assert "login.failed" in verbs
    assert "login.succeeded" in verbs


def test_user_history_keeps_username_after_deletion():
    pm = member("product_manager")
    p = product(pm)
    username = pm.username
    pm.delete()
    assert p.history.first().history_username == username

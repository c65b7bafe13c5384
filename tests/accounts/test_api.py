"""The accounts REST API: personal access tokens, teams and the current user."""

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import services as accounts
from apps.accounts.models import PersonalAccessToken
from apps.accounts.roles import AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER

from ..api_suite import APIResourceSuite, assert_error, last_seq, verbs_since
from ..factories import TeamFactory, UserFactory, member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Users are made by the dozen here and never log in with a password: hash cheaply."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _bearer(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


class TestTokenAPI(APIResourceSuite):
    """Tokens are the requesting user's own: another user's token is out of scope (404)."""

    url = "/api/v1/tokens/"
    create_verbs = ("token.created",)
    actions = (("revoke", {}, ("token.revoked",)),)
    wrong_roles = ()  # every user manages their own tokens, whatever their role
    list_queries = 3
    list_extra = 1  # the token the test client authenticates with

    def make(self, actor):
        return accounts.token_create(actor=actor, user=actor, name="script").token

    def create_payload(self, actor):
        return {"name": "ci"}


class TestTeamAPI(APIResourceSuite):
    """Teams are read-only here; a user sees the teams they belong to."""

    url = "/api/v1/teams/"
    wrong_roles = ()
    list_queries = 4
    list_extra = 1  # the owner's own team

    def make(self, actor):
        team = TeamFactory()
        accounts.membership_add(actor=None, user=actor, team=team, role=DEVELOPER)
        return team


# --- Tokens -----------------------------------------------------------------------------------


@pytest.fixture
def user():
    return member(PRODUCT_MANAGER)


def test_token_key_is_shown_once_and_the_list_shows_only_the_prefix(client_for, user):
    client = client_for(user)
    seq = last_seq()
    response = client.post("/api/v1/tokens/", {"name": "deploy script"}, format="json")
    assert response.status_code == 201, response.data
    created = response.json()
    key = created["key"]
    assert key.startswith(f"plm_{created['prefix']}_")
    assert created["status"] == "active"
    assert created["expires_at"]
    assert verbs_since(seq) == Counter({"token.created": 1})

    listed = client.get("/api/v1/tokens/").json()["results"]
    mine = next(row for row in listed if row["id"] == created["id"])
    assert "key" not in mine
    assert mine["prefix"] == created["prefix"]
    assert key not in str(listed)
    detail = client.get(f"/api/v1/tokens/{created['id']}/").json()
    assert "key" not in detail

    # The new key works on its own.
    me = _bearer(key).get("/api/v1/me/")
    assert me.status_code == 200
    assert me.json()["username"] == user.username


def test_token_with_an_expiry(client_for, user):
    expires = timezone.now() + timedelta(days=7)
    response = client_for(user).post(
        "/api/v1/tokens/", {"name": "week", "expires_at": expires.isoformat()}, format="json"
    )
    assert response.status_code == 201, response.data
    token = PersonalAccessToken.objects.get(pk=response.json()["id"])
    assert abs((token.expires_at - expires).total_seconds()) < 1


def test_token_expiry_in_the_past_and_blank_name_are_400(client_for, user):
    client = client_for(user)
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    body = assert_error(
        client.post("/api/v1/tokens/", {"name": "old", "expires_at": past}, format="json"), 400
    )
    assert "expires_at" in body["fields"]
    body = assert_error(client.post("/api/v1/tokens/", {"name": ""}, format="json"), 400)
    assert "name" in body["fields"]


def test_revoked_token_is_401(client_for, user):
    new = accounts.token_create(actor=user, user=user, name="temp")
    client = _bearer(new.key)
    assert client.get("/api/v1/me/").status_code == 200
    response = client_for(user).post(f"/api/v1/tokens/{new.token.pk}/revoke/", format="json")
    assert response.status_code == 200, response.data
    assert response.json()["status"] == "revoked"
    assert response.json()["revoked_at"]
    body = assert_error(client.get("/api/v1/me/"), 401)
    assert "revoked" in body["message"]
    assert_error(
        client_for(user).post(f"/api/v1/tokens/{new.token.pk}/revoke/", format="json"),
        409,
        "already_revoked",
    )


def test_a_token_can_revoke_itself(user):
    new = accounts.token_create(actor=user, user=user, name="self")
    client = _bearer(new.key)
    assert client.post(f"/api/v1/tokens/{new.token.pk}/revoke/").status_code == 200
    assert_error(client.get("/api/v1/tokens/"), 401)


def test_expired_token_is_401(user):
    new = accounts.token_create(actor=user, user=user, name="short", days=1)
    client = _bearer(new.key)
    assert client.get("/api/v1/me/").status_code == 200
    # Expire it without going through a service (a test of the clock, not of a write).
    PersonalAccessToken._base_manager.filter(pk=new.token.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert_error(client.get("/api/v1/me/"), 401)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer plm_abcdef01_not-the-secret",
        "Bearer nonsense",
        "Bearer",
        "Bearer a b",
    ],
)
def test_bad_bearer_tokens_are_401(header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/me/")
    body = assert_error(response, 401)
    assert body["code"] == "authentication_failed"
    assert response["WWW-Authenticate"] == "Bearer"


def test_anonymous_me_is_401():
    response = APIClient().get("/api/v1/me/")
    assert_error(response, 401, "not_authenticated")
    assert response["WWW-Authenticate"] == "Bearer"


def test_inactive_users_token_is_401(user):
    new = accounts.token_create(actor=user, user=user, name="x")
    user.is_active = False
    user.save()
    assert_error(_bearer(new.key).get("/api/v1/me/"), 401)


# --- Me and teams -----------------------------------------------------------------------------


def test_me_lists_roles_and_teams(client_for):
    team = TeamFactory(slug="alpha")
    other = TeamFactory(slug="beta")
    person = member(PRODUCT_MANAGER, team)
    accounts.membership_add(actor=None, user=person, team=team, role=REVIEWER)
    accounts.membership_add(actor=None, user=person, team=other, role=DEVELOPER)
    body = client_for(person).get("/api/v1/me/").json()
    assert body["username"] == person.username
    assert body["roles"] == ["developer", "product_manager", "reviewer"]
    assert [(t["slug"], t["roles"]) for t in body["teams"]] == [
        ("alpha", ["product_manager", "reviewer"]),
        ("beta", ["developer"]),
    ]
    assert body["is_superuser"] is False


def test_teams_are_my_own_or_all_for_auditors_and_superusers(client_for):
    mine, theirs = TeamFactory(), TeamFactory()
    person = member(DEVELOPER, mine)
    auditor = member(AUDITOR)
    superuser = UserFactory(is_superuser=True, is_staff=True)

    def slugs(user):
        return {
            row["slug"]
            for row in client_for(user).get("/api/v1/teams/?page_size=200").json()["results"]
        }

    assert slugs(person) == {mine.slug}
    assert {mine.slug, theirs.slug} <= slugs(auditor)
    assert {mine.slug, theirs.slug} <= slugs(superuser)
    assert_error(client_for(person).get(f"/api/v1/teams/{theirs.pk}/"), 404)
    assert client_for(auditor).get(f"/api/v1/teams/{theirs.pk}/").status_code == 200


def test_teams_cannot_be_written(client_for):
    person = member(PRODUCT_MANAGER)
    team = person.memberships.first().team
    client = client_for(person)
    assert_error(client.post("/api/v1/teams/", {"slug": "x", "name": "X"}, format="json"), 405)
    assert_error(client.patch(f"/api/v1/teams/{team.pk}/", {"name": "X"}, format="json"), 405)
    assert_error(client.delete(f"/api/v1/teams/{team.pk}/"), 405)

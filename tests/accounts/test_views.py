"""Account pages: sign-in and its throttling, sign-out, password change, personal tokens."""

import re
import uuid

import pytest
from django.urls import reverse

from apps.accounts.models import PersonalAccessToken
from apps.accounts.services import token_authenticate, token_create
from apps.audit.models import AuditEvent
from tests.factories import PASSWORD, member

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def pm():
    return member("product_manager")


def _text(response) -> str:
    return response.content.decode()


# --- sign-in -----------------------------------------------------------------------------------


def test_login_page_renders(client):
    response = client.get(reverse("login"))
    html = _text(response)
    assert response.status_code == 200
    assert 'name="username"' in html
    assert 'name="password"' in html
    assert 'autocomplete="current-password"' in html
    assert "/static/css/app.css" in html
    assert "/static/django_htmx/htmx-2.min.js" in html


def test_login_through_the_form(client, pm):
    response = client.post(reverse("login"), {"username": pm.username, "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")
    assert client.get(reverse("dashboard")).status_code == 200
    assert AuditEvent.objects.filter(verb="login.succeeded", actor=pm).count() == 1


def test_login_honours_next(client, pm):
    response = client.post(
        reverse("login") + "?next=/products/",
        {"username": pm.username, "password": PASSWORD, "next": "/products/"},
    )
    assert response["Location"] == "/products/"


def test_login_refuses_offsite_next(client, pm):
    response = client.post(
        reverse("login"),
        {"username": pm.username, "password": PASSWORD, "next": "https://evil.example/"},
    )
    assert response["Location"] == reverse("dashboard")


def test_failed_login_shows_an_error(client, pm):
    response = client.post(reverse("login"), {"username": pm.username, "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in _text(response)
    assert AuditEvent.objects.filter(verb="login.failed").count() == 1


def test_signed_in_user_is_sent_on_from_the_login_page(client, pm):
    client.force_login(pm)
    assert client.get(reverse("login"))["Location"] == reverse("dashboard")


def test_lockout_after_failed_logins(client, pm, settings):
    """GIVEN AXES_FAILURE_LIMIT wrong passwords in a row
    WHEN the user then tries again, even with the right password
    THEN the lockout page is shown (429) and no session is opened."""
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        response = client.post(reverse("login"), {"username": pm.username, "password": "nope"})
        assert response.status_code == 200
    response = client.post(reverse("login"), {"username": pm.username, "password": "nope"})
    assert response.status_code == 429
    assert "accounts/lockout.html" in [t.name for t in response.templates]
    html = _text(response)
    assert "Sign-in paused" in html
    assert pm.username in html
    response = client.post(reverse("login"), {"username": pm.username, "password": PASSWORD})
    assert response.status_code == 429
    assert client.get(reverse("dashboard")).status_code == 302
    assert AuditEvent.objects.filter(verb="login.locked_out").exists()


def test_logout_is_post_only(client, pm):
    client.force_login(pm)
    assert client.get(reverse("logout")).status_code == 405
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get(reverse("dashboard")).status_code == 302


def test_password_change(client, pm):
    client.force_login(pm)
    assert client.get(reverse("password_change")).status_code == 200
    bad = client.post(
        reverse("password_change"),
        {"old_password": "wrong", "new_password1": "x", "new_password2": "y"},
    )
    assert bad.status_code == 200
    assert "Your old password was entered incorrectly" in _text(bad)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a-new-long-pass-9183",
            "new_password2": "a-new-long-pass-9183",
        },
    )
    assert response["Location"] == reverse("password_change_done")
    assert "has been changed" in _text(client.get(response["Location"]))
    pm.refresh_from_db()
    assert pm.check_password("a-new-long-pass-9183")


def test_password_change_requires_login(client):
    assert client.get(reverse("password_change")).status_code == 302


# --- tokens ----------------------------------------------------------------------------------


def test_tokens_page_lists_own_tokens_only(client, pm):
    other = member("developer")
    token_create(actor=other, user=other, name="not mine")
    mine = token_create(actor=pm, user=pm, name="ci pipeline").token
    client.force_login(pm)
    response = client.get(reverse("token_list"))
    html = _text(response)
    assert response.status_code == 200
    assert "ci pipeline" in html
    assert mine.prefix in html
    assert "not mine" not in html
    assert "active" in html


def test_token_create_shows_the_secret_once(client, pm):
    client.force_login(pm)
    response = client.post(reverse("token_list"), {"name": "laptop", "days": "30"})
    html = _text(response)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = PersonalAccessToken.objects.get(user=pm, name="laptop")
    start = html.index('id="new-token" value="') + len('id="new-token" value="')
    key = html[start : html.index('"', start)]
    assert token_authenticate(key=key) == token
    assert "will not be shown again" in html
    assert 'data-copy-target="#new-token"' in html
    later = _text(client.get(reverse("token_list")))
    assert key not in later
    assert token.prefix in later


def test_token_create_validation(client, pm):
    client.force_login(pm)
    response = client.post(reverse("token_list"), {"name": "", "days": "999"})
    html = _text(response)
    assert "This field is required." in html
    assert "Select a valid choice" in html
    assert not PersonalAccessToken.objects.exists()


def test_token_revoke(client, pm):
    token = token_create(actor=pm, user=pm, name="old").token
    client.force_login(pm)
    assert client.get(reverse("token_revoke", args=[token.pk])).status_code == 405
    response = client.post(reverse("token_revoke", args=[token.pk]), follow=True)
    token.refresh_from_db()
    assert token.revoked_at is not None
    html = _text(response)
    assert "is revoked" in html
    assert "badge-revoked" in html
    again = client.post(reverse("token_revoke", args=[token.pk]), follow=True)
    assert "already revoked" in _text(again)


def test_someone_elses_token_is_404(client, pm):
    other = member("developer")
    theirs = token_create(actor=other, user=other, name="theirs").token
    client.force_login(pm)
    assert client.post(reverse("token_revoke", args=[theirs.pk])).status_code == 404
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_tokens_require_login(client):
    response = client.get(reverse("token_list"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


# --- read-only roles ---------------------------------------------------------------------------


def _every_page_url():
    """(url name, path) for every page route (not the API, the admin or the metrics), with
    made-up values for its parameters: the guard refuses before any object is looked up."""
    from django.urls import URLPattern, URLResolver, get_resolver

    values = {"uuid": str(uuid.uuid4()), "int": "1"}

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield p.name, prefix + str(p.pattern)

    for name, route in walk(get_resolver().url_patterns):
        if route.startswith(("api/", "admin/", "^")) or "(?P" in route:
            continue
        route = re.sub(r"<(?:(\w+):)?\w+>", lambda m: values.get(m.group(1), "x"), route)
        yield name, "/" + route


def test_an_auditor_cannot_post_to_any_page(client):
    """GIVEN an auditor signed in WHEN they POST to every page route of the portal THEN each is
    a 403 before the view runs, but for their own session, password, tokens and the chain's
    verification; and the audit chain did not move."""
    from apps.accounts.middleware import READ_ONLY_MAY_POST

    auditor = member("auditor")
    client.force_login(auditor)
    head = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    seen, not_refused = 0, {}
    for name, path in _every_page_url():
        if name in READ_ONLY_MAY_POST:
            continue
        seen += 1
        status = client.post(path, {"name": "auditor was here"}).status_code
        if status != 403:
            not_refused[path] = status
    assert seen > 60, seen
    assert not not_refused, not_refused
    assert AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() == head


def test_a_product_manager_is_not_stopped_by_the_read_only_guard(client):
    pm = member("product_manager")
    client.force_login(pm)
    response = client.post(reverse("product_create"), {"slug": "", "name": ""})
    assert response.status_code == 200  # the form's own validation answers


def test_someone_with_another_role_besides_auditor_writes(client):
    auditor = member("auditor")
    from apps.accounts import services as accounts

    accounts.membership_add(
        actor=None, user=auditor, team=auditor.memberships.first().team, role="product_manager"
    )
    client.force_login(auditor)
    assert client.post(reverse("product_create"), {"slug": "", "name": ""}).status_code == 200

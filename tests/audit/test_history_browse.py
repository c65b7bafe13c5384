"""The history of any object, field by field (``/audit/history/<type>/<id>/`` and
``/api/v1/history/``)."""

import pytest

from apps.audit.history_browse import REDACTED, object_history
from apps.catalog import services as catalog
from apps.portal import services as portal
from tests.factories import member, product

from .trail_helpers import World

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return World()


@pytest.fixture
def edited(world):
    """A product created by alice, renamed by alice, then its intended use set by carol."""
    carol = member("product_manager", world.product.owner_team, username="carol")
    p = catalog.product_update(actor=world.pm, product=world.product, name="Renamed")
    p = catalog.product_update(actor=carol, product=p, intended_use="Answer tickets.")
    return p


def test_product_edited_twice_field_by_field(world, edited):
    history = object_history(object_type="catalog.product", object_id=str(edited.pk))
    assert history.exists and history.title == "mine"
    newest, middle, created = history.versions
    assert [v.type for v in history.versions] == ["~", "~", "+"]
    assert newest.who == "carol" and middle.who == "alice" and created.who == "alice"
    assert [(c.field, c.old, c.new) for c in newest.changes] == [
        ("intended_use", "", "Answer tickets.")
    ]
    assert [(c.field, c.old, c.new) for c in middle.changes] == [
        ("name", world.product.name, "Renamed")
    ]
    assert {c.field for c in created.changes} >= {"slug", "name", "owner_team", "stage"}
    assert newest.at >= middle.at >= created.at


def test_page_shows_versions_and_events(client, world, edited):
    client.force_login(world.auditor)
    response = client.get(f"/audit/history/catalog.product/{edited.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.count('data-history-type="~"') == 2 and 'data-history-type="+"' in body
    assert "Renamed" in body and "Answer tickets." in body and "carol" in body
    assert "product.updated" in body  # the audit events about it


def test_api_history(client_for, world, edited):
    response = client_for(world.auditor).get(
        "/api/v1/history/", {"object_type": "catalog.product", "object_id": str(edited.pk)}
    )
    assert response.status_code == 200, response.data
    body = response.json()
    assert [v["type"] for v in body["versions"]] == ["~", "~", "+"]
    assert body["versions"][0]["who"] == "carol"
    assert body["versions"][1]["changes"] == [
        {"field": "name", "label": "name", "old": world.product.name, "new": "Renamed"}
    ]
    assert {e["verb"] for e in body["events"]} >= {"product.created", "product.updated"}


@pytest.mark.parametrize(
    "path",
    [
        "/audit/history/nope.thing/1/",
        "/audit/history/audit.auditevent/1/",  # a model without history
        "/audit/history/catalog/1/",
        "/audit/history/catalog.product/not-a-uuid/",
        "/audit/history/catalog.product/00000000-0000-0000-0000-000000000000/",
    ],
)
def test_unknown_type_or_object_is_404(client, world, path):
    client.force_login(world.auditor)
    assert client.get(path).status_code == 404


def test_api_unknown_type_is_404_and_missing_params_400(client_for, world):
    client = client_for(world.auditor)
    response = client.get("/api/v1/history/", {"object_type": "nope.x", "object_id": "1"})
    assert response.status_code == 404
    assert set(response.json()) == {"code", "message", "fields"}
    assert client.get("/api/v1/history/").status_code == 400


def test_scope_of_history(client, world, edited):
    """A product manager reads their own products' history; another team's is a 404;
    a developer may not browse at all."""
    url = f"/audit/history/catalog.product/{edited.pk}/"
    client.force_login(world.pm)
    assert client.get(url).status_code == 200
    client.force_login(world.other_pm)
    assert client.get(url).status_code == 404
    client.force_login(world.developer)
    assert client.get(url).status_code == 403


def test_deleted_object_history_remains(world):
    app = portal.application_create(actor=world.pm, name="To go")
    pk = app.pk
    app.delete()
    history = object_history(object_type="portal.application", object_id=str(pk))
    assert history is not None and not history.exists
    assert history.versions[0].type == "-"


def test_secrets_never_show(world):
    """A personal token's hash is tracked by the history but shown redacted; an API key's hash
    is not tracked at all."""
    from apps.accounts.models import PersonalAccessToken
    from apps.accounts.services import token_create
    from apps.portal.models import APIKey

    token_create(actor=world.pm, user=world.pm, name="t")
    token = PersonalAccessToken.objects.get(user=world.pm, name="t")
    history = object_history(object_type="accounts.personalaccesstoken", object_id=str(token.pk))
    values = {c.field: c.new for v in history.versions for c in v.changes}
    assert values["token_hash"] == REDACTED
    assert token.token_hash not in repr(history)

    app = portal.application_create(actor=world.pm, name="Keys")
    portal.key_create(actor=world.pm, application=app, name="k")
    key = APIKey.objects.get(application=app)
    history = object_history(object_type="portal.apikey", object_id=str(key.pk))
    fields = {c.field for v in history.versions for c in v.changes}
    assert "key_hash" not in fields and fields


def test_other_product_unrelated(world):
    other = product(world.other_pm, slug="elsewhere")
    assert object_history(object_type="catalog.product", object_id=str(other.pk)) is not None

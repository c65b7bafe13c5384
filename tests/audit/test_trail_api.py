"""``/api/v1/audit-events/``: filters, cursor pages, scope, read-only (405 for writes)."""

import pytest

from tests.api_suite import assert_error

from .trail_helpers import World, record, utc

pytestmark = pytest.mark.django_db
URL = "/api/v1/audit-events/"


@pytest.fixture
def world():
    return World()


def seqs(response) -> list[int]:
    assert response.status_code == 200, response.data
    return [row["seq"] for row in response.json()["results"]]


def test_anonymous_401_developer_403(api_client, client_for, world):
    assert_error(api_client.get(URL), 401)
    assert_error(client_for(world.developer).get(URL), 403)
    assert_error(client_for(world.developer).get("/api/v1/history/"), 403)


def test_filters(client_for, world):
    a1 = record(world.pm, "subscription.requested", at=utc(2026, 3, 1, 9), object_id="5")
    b1 = record(world.other_pm, "subscription.approved", at=utc(2026, 3, 1, 11))
    a2 = record(world.pm, "release.released", at=utc(2026, 3, 2, 9), product_id=world.product.pk)
    client = client_for(world.auditor)
    assert seqs(client.get(URL, {"actor": "alice", "verb_prefix": "subscription."})) == [a1.seq]
    assert seqs(client.get(URL, {"verb": "subscription."})) == [b1.seq, a1.seq]
    assert seqs(client.get(URL, {"verb": "release.released"})) == [a2.seq]
    assert seqs(client.get(URL, {"product": str(world.product.pk), "verb": "release."})) == [a2.seq]
    assert seqs(client.get(URL, {"product": "mine", "verb": "release."})) == [a2.seq]
    assert seqs(client.get(URL, {"object_type": "test.thing", "object_id": "5"})) == [a1.seq]
    assert seqs(
        client.get(URL, {"at_after": "2026-03-01T10:00:00Z", "at_before": "2026-03-01"})
    ) == [b1.seq]
    assert_error(client.get(URL, {"at_after": "tomorrow"}), 400, "invalid")
    assert_error(client.get(URL, {"at_after": "2026-03-02", "at_before": "2026-03-01"}), 400)


def test_scope_and_retrieve(client_for, world):
    mine = record(world.other_pm, "x.a", product_id=world.product.pk)
    theirs = record(world.other_pm, "x.b", product_id=world.other_product.pk)
    own = record(world.pm, "x.c")
    client = client_for(world.pm)
    shown = seqs(client.get(URL, {"verb": "x."}))
    assert shown == [own.seq, mine.seq]
    assert client.get(f"{URL}{mine.seq}/").json()["verb"] == "x.a"
    assert_error(client.get(f"{URL}{theirs.seq}/"), 404)
    assert_error(client.get(f"{URL}99999999999999999999999/"), 404)
    auditor = client_for(world.auditor)
    assert seqs(auditor.get(URL, {"verb": "x."})) == [own.seq, theirs.seq, mine.seq]
    body = auditor.get(f"{URL}{theirs.seq}/").json()
    assert body["actor"] == "bob" and body["product"] == str(world.other_product.pk)
    assert body["hash"] == theirs.hash


def test_cursor_pagination(client_for, world):
    made = [record(world.pm, "page.x", object_id=str(i)).seq for i in range(60)]
    client = client_for(world.auditor)
    first = client.get(URL, {"verb": "page.x", "page_size": 25})
    assert seqs(first) == made[::-1][:25]
    assert "count" not in first.json() and first.json()["previous"] is None
    second = client.get(first.json()["next"])
    assert seqs(second) == made[::-1][25:50]
    third = client.get(second.json()["next"])
    assert seqs(third) == made[::-1][50:] and third.json()["next"] is None
    back = client.get(third.json()["previous"])
    assert seqs(back) == made[::-1][25:50]
    assert_error(client.get(URL, {"cursor": "garbage"}), 404)


def test_query_count_is_constant(client_for, world, django_assert_num_queries):
    client = client_for(world.auditor)
    client.get(URL)
    for i in range(3):
        record(world.pm, "q.x", object_id=str(i), product_id=world.product.pk)
    with django_assert_num_queries(3) as captured:
        client.get(URL, {"verb": "q.x"})
    for i in range(40):
        record(world.pm, "q.x", object_id=str(i), product_id=world.other_product.pk)
    with django_assert_num_queries(len(captured.captured_queries)):
        assert len(seqs(client.get(URL, {"verb": "q.x"}))) == 25


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_writes_are_405(client_for, world, method):
    event = record(world.pm, "x.a")
    client = client_for(world.auditor)
    url = URL if method == "post" else f"{URL}{event.seq}/"
    assert_error(getattr(client, method)(url, {}, format="json"), 405)
    assert_error(getattr(client, method)("/api/v1/history/", {}, format="json"), 405)
    assert_error(getattr(client, method)(f"{URL}export/", {}, format="json"), 405)

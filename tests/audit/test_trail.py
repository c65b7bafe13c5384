"""The audit trail page (``/audit/``): filters, scope, keyset pages, constant query counts."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.audit.models import AuditEvent

from .trail_helpers import World, record, utc

pytestmark = pytest.mark.django_db
URL = "/audit/"


@pytest.fixture
def world():
    return World()


def login(client, user):
    client.force_login(user)
    return client


def seqs(response) -> list[int]:
    return [int(s) for s in re.findall(r'data-seq="(\d+)"', response.content.decode())]


def test_urls_and_names():
    assert reverse("audit_trail") == "/audit/"
    assert reverse("audit_trail_export") == "/audit/export/"
    assert reverse("audit_history", args=["catalog.product", "x"]) == (
        "/audit/history/catalog.product/x/"
    )


def test_anonymous_is_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302 and "/login" in response["Location"]


def test_developer_is_403(client, world):
    response = login(client, world.developer).get(URL)
    assert response.status_code == 403
    assert login(client, world.developer).get("/audit/export/").status_code == 403


def test_auditor_sees_everything_and_nav_link(client, world):
    a = record(world.pm, "x.one", product_id=world.product.pk)
    b = record(world.other_pm, "x.two", product_id=world.other_product.pk)
    response = login(client, world.auditor).get(URL)
    assert response.status_code == 200
    shown = seqs(response)
    assert a.seq in shown and b.seq in shown
    assert shown == sorted(shown, reverse=True)  # newest first
    body = response.content.decode()
    assert 'href="/audit/" class="active" aria-current="page">Audit</a>' in body


def test_product_manager_sees_own_products_and_own_actions(client, world):
    mine = record(world.other_pm, "x.on_my_product", product_id=world.product.pk)
    theirs = record(world.other_pm, "x.theirs", product_id=world.other_product.pk)
    my_action = record(world.pm, "x.my_action")
    response = login(client, world.pm).get(URL)
    shown = seqs(response)
    assert mine.seq in shown and my_action.seq in shown
    assert theirs.seq not in shown
    # a product filter for a product out of scope matches nothing
    response = client.get(URL, {"product": str(world.other_product.pk)})
    assert theirs.seq not in seqs(response)


def test_developer_has_no_audit_link(client, world):
    body = login(client, world.developer).get("/").content.decode()
    assert ">Audit</a>" not in body


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"actor": "alice"}, {"a1", "a2"}),
        ({"verb": "subscription."}, {"a1", "b1"}),
        ({"verb": "subscription*"}, {"a1", "b1"}),
        ({"verb": "release.released"}, {"a2"}),
        ({"object_type": "catalog.release"}, {"a2"}),
        ({"object_type": "test.thing", "object_id": "7"}, {"b1"}),
        ({"at_after": "2026-03-02"}, {"a2", "b2"}),
        ({"at_before": "2026-03-01"}, {"a1", "b1"}),
        ({"at_after": "2026-03-01T12:00:00+02:00", "at_before": "2026-03-02"}, {"b1", "a2"}),
        ({"actor": "alice", "verb": "subscription.", "at_before": "2026-03-01"}, {"a1"}),
    ],
)
def test_each_filter_narrows(client, world, params, expected):
    made = {
        "a1": record(world.pm, "subscription.requested", at=utc(2026, 3, 1, 9)),
        "b1": record(
            world.other_pm, "subscription.approved", at=utc(2026, 3, 1, 11), object_id="7"
        ),
        "a2": record(
            world.pm, "release.released", at=utc(2026, 3, 2, 9), object_type="catalog.release"
        ),
        "b2": record(world.other_pm, "key.created", at=utc(2026, 3, 3, 9)),
    }
    shown = set(seqs(login(client, world.auditor).get(URL, params)))
    tagged = {name for name, event in made.items() if event.seq in shown}
    assert tagged == expected


def test_product_filter_by_id_or_slug(client, world):
    mine = record(world.pm, "x.a", product_id=world.product.pk)
    record(world.other_pm, "x.b", product_id=world.other_product.pk)
    login(client, world.auditor)
    by_id = seqs(client.get(URL, {"product": str(world.product.pk), "verb": "x."}))
    assert by_id == [mine.seq]
    assert seqs(client.get(URL, {"product": "mine", "verb": "x."})) == [mine.seq]
    assert seqs(client.get(URL, {"product": "nope"})) == []


def test_bad_filters_are_a_message_not_a_500(client, world):
    login(client, world.auditor)
    response = client.get(URL, {"at_after": "yesterday"})
    assert response.status_code == 200
    assert "These filters cannot be applied" in response.content.decode()
    response = client.get(URL, {"at_after": "2026-03-05", "at_before": "2026-03-01"})
    assert "must be later" in response.content.decode()


def test_keyset_pages_next_and_previous(client, world):
    """GIVEN 120 events WHEN paging older then newer THEN each page has 50, none repeats."""
    events = [record(world.pm, "page.test", object_id=str(i)) for i in range(120)]
    all_seqs = sorted((e.seq for e in events), reverse=True)
    login(client, world.auditor)
    first = client.get(URL, {"verb": "page.test"})
    assert seqs(first) == all_seqs[:50]
    body = first.content.decode()
    assert f"before={all_seqs[49]}" in body and "after=" not in body
    second = client.get(URL, {"verb": "page.test", "before": all_seqs[49]})
    assert seqs(second) == all_seqs[50:100]
    third = client.get(URL, {"verb": "page.test", "before": all_seqs[99]})
    assert seqs(third) == all_seqs[100:]
    assert "Older" not in third.content.decode()
    back = client.get(URL, {"verb": "page.test", "after": all_seqs[100]})
    assert seqs(back) == all_seqs[50:100]
    assert f"after={all_seqs[50]}" in back.content.decode()
    newest = client.get(URL, {"verb": "page.test", "after": all_seqs[50]})
    assert seqs(newest) == all_seqs[:50]
    assert "Newer" not in newest.content.decode()


def test_htmx_swaps_the_results_only(client, world):
    record(world.pm, "x.a")
    response = login(client, world.auditor).get(URL, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert "<html" not in body and "trail-table" in body
    assert "HX-Request" in response["Vary"]


def test_row_expands_before_after_and_links_history(client, world):
    record(
        world.pm,
        "product.updated",
        object_type="catalog.product",
        object_id=str(world.product.pk),
        product_id=world.product.pk,
        before={"name": "Old name"},
        after={"name": "New name"},
    )
    body = login(client, world.auditor).get(URL).content.decode()
    assert "Old name" in body and "New name" in body
    assert f'href="/audit/history/catalog.product/{world.product.pk}/"' in body
    assert "?format=csv" in body and "?format=json" in body


def _queries(client, *args) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(*args).status_code == 200
    return len(captured.captured_queries)


def test_query_count_is_constant_per_page(client, world, django_assert_num_queries):
    """GIVEN 5 events and then 60, on several products WHEN a page is read THEN the same
    number of queries (session, user, roles, product choices, the page, its product slugs,
    and the layout's own)."""
    login(client, world.auditor)
    client.get(URL)
    for i in range(5):
        record(
            world.pm,
            "q.test",
            product_id=world.product.pk,
            object_id=str(i),
            object_type="catalog.product",
            after={"i": i},
        )
    small = _queries(client, URL)
    for i in range(55):
        pid = world.product.pk if i % 2 else world.other_product.pk
        record(world.pm, "q.test", product_id=pid, object_id=str(i), after={"i": i})
    with django_assert_num_queries(small):
        response = client.get(URL)
    assert len(seqs(response)) == 50
    deep = {"before": seqs(response)[-1]}
    with django_assert_num_queries(small + 1):  # + "is there a newer page"
        client.get(URL, deep)
    assert AuditEvent.objects.count() >= 60

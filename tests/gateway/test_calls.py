"""Provider calls: who sees which (API and page), every filter, bad input, pages and order."""

import datetime as dt
import re
import uuid
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from apps.accounts.roles import ADMIN, AUDITOR, DEVELOPER, PRODUCT_MANAGER, REVIEWER
from apps.gateway.models import ProviderCall

from ..api_suite import APIResourceSuite, assert_error
from ..factories import TeamFactory, member, product, release
from .factories import provider

pytestmark = pytest.mark.django_db

URL = "/api/v1/provider-calls/"
FIELDS = {
    "id",
    "created_at",
    "product",
    "release",
    "provider",
    "provider_model",
    "model_version",
    "prompt_version",
    "source",
    "outcome",
    "error_class",
    "status_code",
    "attempts",
    "tokens_in",
    "tokens_out",
    "cost",
    "latency_ms",
    "ttft_ms",
    "cache_hit",
    "fallback_index",
    "streamed",
}
# Exact query counts, whatever the number of rows.
PM_LIST_QUERIES = 6  # token, roles, user perms, group perms, count, page (relations joined)
PAGE_QUERIES = 10  # session, user, roles, 2 perms, products, providers, summary, queue, page


def make_call(*, created_at: dt.datetime | None = None, **kwargs) -> ProviderCall:
    """A call row as the pipeline records it (created directly: it is a plain model)."""
    kwargs.setdefault("outcome", "ok")
    kwargs.setdefault("provider_model", "echo")
    kwargs.setdefault("attempts", 1)
    call = ProviderCall.objects.create(**kwargs)
    if created_at is not None:
        ProviderCall.objects.filter(pk=call.pk).update(created_at=created_at)
        call.refresh_from_db()
    return call


def ids(response) -> set[str]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


@pytest.fixture
def team():
    return TeamFactory()


@pytest.fixture
def pm(team):
    return member(PRODUCT_MANAGER, team)


@pytest.fixture
def prod(pm):
    return product(pm, slug="support-bot")


@pytest.fixture
def other_pm():
    return member(PRODUCT_MANAGER)


@pytest.fixture
def other_prod(other_pm):
    return product(other_pm, slug="their-bot")


@pytest.fixture
def prov():
    return provider(kind="builtin", slug="local-echo")


@pytest.fixture
def calls(prod, other_prod, prov):
    """One call of ours, one of another team, one direct call (no product)."""
    return {
        "ours": make_call(product=prod, provider=prov, provider_model="ours-model"),
        "theirs": make_call(product=other_prod, provider=prov, provider_model="their-model"),
        "direct": make_call(provider=prov, provider_model="direct-model", source="playground"),
    }


# --- the reusable suite: 401, 404 out of scope, read-only (405), query counts, bad filters ----


class TestProviderCallAPI(APIResourceSuite):
    url = URL
    list_queries = PM_LIST_QUERIES
    bad_filters = (
        "created_after=yesterday",
        "created_before=2026-13-01",
        "created_after=2026-05-01T25:00",
        "release=not-a-uuid",
        "outcome=maybe",
        "source=fax",
        "cache_hit=perhaps",
        "product=not%20a%20slug",
        "provider=%00",
        "created_after=2026-05-03&created_before=2026-05-01",
    )

    def make(self, actor):
        return make_call(product=product(actor))

    def make_for_list(self, actor):
        rel = release(actor)
        return make_call(
            product=rel.product,
            release=rel,
            prompt_version=rel.prompt_version,
            model_version=rel.model_version,
            provider=provider(kind="builtin"),
            tokens_in=12,
            tokens_out=30,
            cost=Decimal("0.00012"),
            latency_ms=120,
        )


# --- scope ---------------------------------------------------------------------------------------


def test_a_member_sees_the_calls_of_their_teams_products_only(client_for, pm, calls):
    client = client_for(pm)
    assert ids(client.get(URL)) == {str(calls["ours"].pk)}
    assert client.get(f"{URL}{calls['ours'].pk}/").status_code == 200
    assert_error(client.get(f"{URL}{calls['theirs'].pk}/"), 404)
    assert_error(client.get(f"{URL}{calls['direct'].pk}/"), 404)


@pytest.mark.parametrize("role", [REVIEWER, DEVELOPER])
def test_every_role_of_the_team_sees_its_calls(client_for, team, calls, role):
    assert ids(client_for(member(role, team)).get(URL)) == {str(calls["ours"].pk)}


def test_an_auditor_sees_every_products_calls_but_not_direct_calls(client_for, calls):
    client = client_for(member(AUDITOR))
    assert ids(client.get(URL)) == {str(calls["ours"].pk), str(calls["theirs"].pk)}
    assert_error(client.get(f"{URL}{calls['direct'].pk}/"), 404)


def test_an_admin_sees_every_call_direct_ones_included(client_for, calls):
    client = client_for(member(ADMIN))  # an admin of yet another team
    assert ids(client.get(URL)) == {str(c.pk) for c in calls.values()}


def test_a_superuser_sees_every_call(client, calls):
    from apps.accounts.models import User

    root = User.objects.create_superuser("root", "root@example.test", "x")
    client.force_login(root)
    assert ids(client.get(URL)) == {str(c.pk) for c in calls.values()}


def test_a_user_without_a_team_sees_nothing(client_for, calls):
    from tests.factories import UserFactory

    assert ids(client_for(UserFactory()).get(URL)) == set()


# --- the shape -----------------------------------------------------------------------------------


def test_a_call_shows_its_telemetry_and_nothing_else(client_for, pm):
    rel = release(pm)
    prov = provider(kind="builtin", slug="shape-provider")
    call = make_call(
        product=rel.product,
        release=rel,
        prompt_version=rel.prompt_version,
        model_version=rel.model_version,
        provider=prov,
        provider_model="echo-1",
        attempts=2,
        tokens_in=11,
        tokens_out=22,
        cost=Decimal("0.00123400"),
        latency_ms=345,
        ttft_ms=40,
        outcome="error",
        error_class="UpstreamTimeout",
        status_code=504,
        fallback_index=1,
        streamed=True,
        source="gateway",
    )
    body = client_for(pm).get(f"{URL}{call.pk}/").json()
    assert set(body) == FIELDS
    assert body["product"] == rel.product.slug
    assert body["release"] == {"id": str(rel.pk), "version": rel.version}
    assert body["provider"] == "shape-provider"
    assert body["model_version"] == str(rel.model_version_id)
    assert body["prompt_version"] == str(rel.prompt_version_id)
    assert body["cost"] == "0.00123400"
    assert (body["tokens_in"], body["tokens_out"], body["latency_ms"], body["ttft_ms"]) == (
        11,
        22,
        345,
        40,
    )
    assert (body["outcome"], body["error_class"], body["status_code"]) == (
        "error",
        "UpstreamTimeout",
        504,
    )
    assert (body["attempts"], body["fallback_index"], body["streamed"]) == (2, 1, True)
    assert (body["source"], body["cache_hit"]) == ("gateway", False)


def test_a_malformed_id_is_a_404(client_for, pm):
    assert_error(client_for(pm).get(f"{URL}not-a-uuid/"), 404)
    assert_error(client_for(pm).get(f"{URL}{uuid.uuid4()}/"), 404)


def test_the_api_is_read_only(client_for, calls):
    client = client_for(member(ADMIN))
    assert_error(client.post(URL, {}, format="json"), 405)
    for method in (client.put, client.patch, client.delete):
        assert_error(method(f"{URL}{calls['ours'].pk}/", {}, format="json"), 405)


def test_a_direct_call_has_null_relations(client_for, calls):
    body = client_for(member(ADMIN)).get(f"{URL}{calls['direct'].pk}/").json()
    assert (body["product"], body["release"], body["model_version"]) == (None, None, None)


# --- filters -------------------------------------------------------------------------------------


@pytest.fixture
def varied(pm, prod, prov):
    """Calls of two products and releases, two providers, every outcome, source and cache."""
    rel = release(pm, prod, version="1.0.0")
    second = product(pm, slug="second-bot")
    other = provider(kind="builtin", slug="other-echo")
    now = timezone.now()
    return {
        "rel": rel,
        "second": second,
        "a": make_call(product=prod, release=rel, provider=prov, created_at=now),
        "b": make_call(
            product=prod,
            provider=other,
            outcome="error",
            source="batch",
            created_at=now - dt.timedelta(days=2),
        ),
        "c": make_call(
            product=second,
            provider=prov,
            cache_hit=True,
            source="evaluation",
            created_at=now - dt.timedelta(days=5),
        ),
    }


def _only(client, query: str) -> set[str]:
    return ids(client.get(f"{URL}?{query}"))


def test_each_filter_narrows_the_list(client_for, pm, prod, varied):
    client = client_for(pm)
    a, b, c = (str(varied[k].pk) for k in "abc")
    assert _only(client, "") == {a, b, c}
    assert _only(client, f"product={prod.slug}") == {a, b}
    assert _only(client, f"product={prod.pk}") == {a, b}
    assert _only(client, f"product={varied['second'].slug}") == {c}
    assert _only(client, "product=nope") == set()
    assert _only(client, f"product={uuid.uuid4()}") == set()
    assert _only(client, f"release={varied['rel'].pk}") == {a}
    assert _only(client, "provider=local-echo") == {a, c}
    assert _only(client, "provider=other-echo") == {b}
    assert _only(client, "outcome=error") == {b}
    assert _only(client, "outcome=ok") == {a, c}
    assert _only(client, "source=batch") == {b}
    assert _only(client, "source=evaluation") == {c}
    assert _only(client, "cache_hit=true") == {c}
    assert _only(client, "cache_hit=false") == {a, b}
    assert _only(client, f"product={prod.slug}&outcome=ok") == {a}


def test_date_filters_take_dates_and_date_times(client_for, pm, varied):
    client = client_for(pm)
    a, b, c = (str(varied[k].pk) for k in "abc")
    today = timezone.localdate()
    b_at = varied["b"].created_at
    assert _only(client, f"created_after={today - dt.timedelta(days=2)}") == {a, b}
    assert _only(client, f"created_after={today}") == {a}
    # a date alone as the upper bound includes that whole day
    assert _only(client, f"created_before={today - dt.timedelta(days=2)}") == {b, c}
    assert _only(client, f"created_before={today - dt.timedelta(days=3)}") == {c}
    # a date-time is an instant: at or after, strictly before
    stamp = b_at.isoformat().replace("+00:00", "Z")
    assert _only(client, f"created_after={stamp}") == {a, b}
    assert _only(client, f"created_before={stamp}") == {c}
    naive = timezone.make_naive(b_at).isoformat()
    assert _only(client, f"created_after={naive}") == {a, b}
    week = f"created_after={today - dt.timedelta(days=6)}&created_before={today - dt.timedelta(1)}"
    assert _only(client, week) == {b, c}


def test_a_malformed_date_is_a_400_naming_the_field(client_for, pm):
    body = assert_error(client_for(pm).get(f"{URL}?created_after=last-week"), 400, "invalid")
    assert "created_after" in body["fields"]
    assert "ISO 8601" in body["fields"]["created_after"][0]
    body = assert_error(client_for(pm).get(f"{URL}?created_before=9999-99-99"), 400, "invalid")
    assert "created_before" in body["fields"]


def test_extreme_dates_are_handled(client_for, pm, varied):
    client = client_for(pm)
    assert len(_only(client, "created_before=9999-12-31")) == 3
    assert _only(client, "created_after=9999-12-31") == set()
    assert len(_only(client, "created_after=0001-01-01")) == 3
    body = assert_error(client.get(f"{URL}?created_before=0001-01-01T00:00:00%2B14:00"), 400)
    assert body["fields"]["created_before"] == ["This date is out of range."]
    # an offset PostgreSQL would refuse (past ±15:59) is taken, in UTC
    assert len(_only(client, "created_before=6056-10-10T00:58:44-18:04")) == 3


def test_a_reversed_range_is_a_400(client_for, pm):
    body = assert_error(
        client_for(pm).get(f"{URL}?created_after=2026-05-03&created_before=2026-05-01"), 400
    )
    assert "created_before" in body["fields"]


# --- pages and order -----------------------------------------------------------------------------


def test_the_list_is_paginated(client_for, pm, prod):
    now = timezone.now()
    made = [make_call(product=prod, created_at=now - dt.timedelta(minutes=i)) for i in range(30)]
    client = client_for(pm)
    first = client.get(URL).json()
    assert first["count"] == 30
    assert len(first["results"]) == 25
    assert first["results"][0]["id"] == str(made[0].pk)  # newest first
    second = client.get(first["next"]).json()
    assert len(second["results"]) == 5
    assert second["next"] is None
    seen = [r["id"] for r in first["results"] + second["results"]]
    assert seen == [str(c.pk) for c in made]
    small = client.get(f"{URL}?page_size=10&page=3").json()
    assert [r["id"] for r in small["results"]] == [str(c.pk) for c in made[20:30]]
    assert_error(client.get(f"{URL}?page=9"), 404)


def test_ordering_by_latency_cost_and_time(client_for, pm, prod):
    now = timezone.now()
    slow = make_call(product=prod, latency_ms=900, cost=Decimal("0.1"), created_at=now)
    fast = make_call(
        product=prod, latency_ms=10, cost=Decimal("0.3"), created_at=now - dt.timedelta(hours=1)
    )
    mid = make_call(
        product=prod, latency_ms=300, cost=Decimal("0.2"), created_at=now - dt.timedelta(hours=2)
    )
    client = client_for(pm)

    def order(query):
        return [r["id"] for r in client.get(f"{URL}?ordering={query}").json()["results"]]

    assert order("latency_ms") == [str(c.pk) for c in (fast, mid, slow)]
    assert order("-latency_ms") == [str(c.pk) for c in (slow, mid, fast)]
    assert order("-cost") == [str(c.pk) for c in (fast, mid, slow)]
    assert order("created_at") == [str(c.pk) for c in (mid, fast, slow)]
    assert order("-created_at") == [str(c.pk) for c in (slow, fast, mid)]


def test_equal_values_keep_one_order_across_pages(client_for, pm, prod):
    """GIVEN 30 calls of the same latency WHEN ordered by latency, page by page THEN each call
    shows exactly once (the id breaks ties)."""
    for _ in range(30):
        make_call(product=prod, latency_ms=100)
    client = client_for(pm)
    first = client.get(f"{URL}?ordering=latency_ms&page_size=20").json()
    second = client.get(first["next"]).json()
    seen = [r["id"] for r in first["results"] + second["results"]]
    assert len(seen) == len(set(seen)) == 30


# --- the page ------------------------------------------------------------------------------------


def _text(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def _rows(html: str) -> int:
    body = html.split("<tbody>", 1)[1].split("</tbody>", 1)[0] if "<tbody>" in html else ""
    return body.count("<tr")


@pytest.fixture
def pm_client(client, pm):
    client.force_login(pm)
    return client


def test_the_page_lists_only_calls_in_scope(pm_client, calls):
    html = _text(pm_client.get(reverse("call_list")))
    assert "ours-model" in html
    assert "their-model" not in html
    assert "direct-model" not in html
    assert 'class="active"' in html.split('href="/calls/"', 1)[1][:40]  # the nav says where we are


def test_the_page_for_an_admin_shows_direct_calls(client, calls):
    client.force_login(member(ADMIN))
    html = _text(client.get(reverse("call_list")))
    assert {"ours-model", "their-model", "direct-model"} <= set(re.findall(r"\w+-model", html))


def test_the_page_filters_and_summarises(pm_client, pm, prod, prov):
    make_call(product=prod, provider=prov, cost=Decimal("0.25"), provider_model="kept-1")
    make_call(product=prod, provider=prov, cost=Decimal("0.5"), provider_model="kept-2")
    make_call(
        product=prod,
        provider=prov,
        outcome="error",
        cost=Decimal("0.25"),
        provider_model="kept-3",
    )
    make_call(product=product(pm), provider=prov, provider_model="elsewhere")
    html = _text(pm_client.get(reverse("call_list"), {"product": prod.slug}))
    assert _rows(html) == 3
    assert "elsewhere" not in html
    summary = re.sub(r"\s+", " ", html.split("data-summary>", 1)[1].split("</p>", 1)[0])
    assert "<strong>3</strong> calls" in summary
    assert "<strong>1</strong> error" in summary
    assert "33.3%" in summary
    assert ">1<" in summary  # total cost 1 (0.25 + 0.5 + 0.25)
    html = _text(pm_client.get(reverse("call_list"), {"product": prod.slug, "outcome": "error"}))
    assert _rows(html) == 1
    assert "kept-3" in html


def test_the_page_shows_a_bad_filter_as_a_message_never_a_500(pm_client, calls):
    response = pm_client.get(reverse("call_list"), {"created_after": "31/12/2026", "outcome": "?"})
    html = _text(response)
    assert "These filters cannot be applied" in html
    assert "Enter an ISO 8601 date" in html
    assert "Select a valid choice" in html
    assert _rows(html) == 0


def test_the_page_has_empty_states(pm_client, pm, prod):
    assert "No calls yet" in _text(pm_client.get(reverse("call_list")))
    make_call(product=prod)
    html = _text(pm_client.get(reverse("call_list"), {"outcome": "error"}))
    assert "No calls match these filters" in html


def test_an_htmx_request_gets_the_results_and_the_release_choices(pm_client, pm, prod):
    rel = release(pm, prod, version="2.0.0")
    make_call(product=prod, release=rel)
    response = pm_client.get(
        reverse("call_list"), {"product": prod.slug}, headers={"HX-Request": "true"}
    )
    html = _text(response)
    assert "<html" not in html
    assert 'id="call-release-field" hx-swap-oob="true"' in html
    assert f'<option value="{rel.pk}">2.0.0</option>' in html
    assert _rows(html) == 1
    assert "HX-Request" in response["Vary"]


def test_a_product_named_by_id_stays_selected(pm_client, prod):
    make_call(product=prod)
    html = _text(pm_client.get(reverse("call_list"), {"product": str(prod.pk)}))
    assert f'<option value="{prod.pk}" selected>' in html
    assert _rows(html) == 1


def test_the_page_is_paginated(pm_client, prod):
    for _ in range(30):
        make_call(product=prod)
    first = _text(pm_client.get(reverse("call_list")))
    assert _rows(first) == 25
    assert "1\u201325 of 30" in first  # an en dash
    assert _rows(_text(pm_client.get(reverse("call_list"), {"page": 2}))) == 5


def test_the_page_costs_the_same_queries_for_3_and_30_calls(
    pm_client, pm, prod, prov, django_assert_num_queries
):
    rel = release(pm, prod)
    pm_client.get(reverse("call_list"))

    def add(n):
        for _ in range(n):
            make_call(product=prod, release=rel, provider=prov)

    add(3)
    with django_assert_num_queries(PAGE_QUERIES):
        assert _rows(_text(pm_client.get(reverse("call_list")))) == 3
    add(27)
    with django_assert_num_queries(PAGE_QUERIES):
        assert _rows(_text(pm_client.get(reverse("call_list")))) == 25


def test_the_call_page_in_and_out_of_scope(pm_client, calls):
    html = _text(pm_client.get(reverse("call_detail", args=[calls["ours"].pk])))
    assert "ours-model" in html
    assert pm_client.get(reverse("call_detail", args=[calls["theirs"].pk])).status_code == 404
    assert pm_client.get(reverse("call_detail", args=[calls["direct"].pk])).status_code == 404


def test_the_pages_need_a_login(client, calls):
    response = client.get(reverse("call_list"))
    assert response.status_code == 302
    assert "login" in response["Location"]

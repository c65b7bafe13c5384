"""Time travel: what was live at an instant, for a product and for a published API."""

import datetime as dt
import uuid

import pytest
from django.test import Client
from django.utils import timezone

from apps.accounts.roles import AUDITOR, PRODUCT_MANAGER
from apps.catalog import services as catalog
from apps.catalog.models import Dataset
from apps.changes import services as changes
from apps.compliance.panels import timeline_chart
from apps.compliance.timetravel import (
    Marker,
    Period,
    ProductDidNotExist,
    api_live_at,
    effectivity_timeline,
    live_at,
    parse_instant,
)
from apps.core.exceptions import ApplicationError
from apps.portal import services as portal
from apps.releases.services import release_freeze, release_release
from tests.api_suite import assert_error
from tests.changes.helpers import proposal, released, team_reviewer
from tests.factories import PASSWORD, artifact, member, product, release

pytestmark = pytest.mark.django_db

# What the compliance panels add to the product page for a member of the team (effectivity:
# releases, implemented changes, incidents; incidents: the list and the filing form's releases).
PRODUCT_PANEL_QUERIES = 5


@pytest.fixture
def pm(db):
    return member(PRODUCT_MANAGER)


def _tick():
    """An instant strictly between two writes."""
    now = timezone.now()
    while timezone.now() == now:
        pass
    return timezone.now()


def _implemented_change(pm, baseline):
    reviewer = team_reviewer(pm)
    proposed = proposal(pm, baseline)
    cr = changes.change_request_create(
        actor=pm, product=baseline.product, title="Friendlier", rationale="Curt.", proposed=proposed
    )
    cr = changes.change_request_submit(actor=pm, cr=cr)
    cr, _ = changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    return changes.change_request_implement(actor=pm, cr=cr)


def test_live_at_around_a_release_change(pm):
    """GIVEN a product released 1.0.0, then 1.1.0 through a change request
    WHEN asked at instants before, between and after THEN none, 1.0.0, 1.1.0."""
    prod = product(pm)
    before_any = _tick()
    first = released(pm, prod)
    between = _tick()
    cr = _implemented_change(pm, first)
    after = _tick()

    state = live_at(product=prod, at=before_any)
    assert state.release is None and state.prompt_version is None
    assert state.product.slug == prod.slug

    state = live_at(product=prod, at=between)
    assert state.release.id == first.pk and state.release.status == "released"
    assert state.prompt_version == first.prompt_version
    assert state.model_version == first.model_version
    assert state.settings == first.settings

    state = live_at(product=prod, at=after)
    assert state.release.id == cr.proposed_id and state.release.status == "released"
    # and the old release's status at `between` was released, now it is deprecated
    items = effectivity_timeline(product=prod)
    periods = [i for i in items if isinstance(i, Period)]
    assert [p.version for p in periods] == ["1.0.0", "1.1.0"]
    assert periods[0].status == "deprecated" and periods[0].end is not None
    assert periods[1].change_request.pk == cr.pk and periods[1].end is None


def test_before_the_product_existed(pm):
    at = timezone.now() - dt.timedelta(days=1)
    prod = product(pm)
    with pytest.raises(ProductDidNotExist) as exc:
        live_at(product=prod, at=at)
    assert exc.value.status == 404 and exc.value.code == "did_not_exist"


def test_product_fields_as_of_t(pm):
    prod = product(pm, risk_class="minimal")
    then = _tick()
    from apps.catalog.services import product_update

    product_update(actor=pm, product=prod, risk_class="high")
    assert live_at(product=prod, at=then).product.risk_class == "minimal"
    assert live_at(product=prod, at=timezone.now()).product.risk_class == "high"


def test_fallbacks_and_datasets(pm):
    from tests.factories import model_version

    prod = product(pm)
    fb = model_version(pm, prod.owner_team, provider_model="fallback-1")
    data = catalog.dataset_version_create(
        actor=pm,
        dataset=artifact(pm, Dataset, prod.owner_team),
        uri="s3://bucket/tickets.jsonl",
        sha256="a" * 64,
        row_count=10,
        source="helpdesk",
        licence="internal",
    )
    r = release(pm, prod, settings={"fallback": [str(fb.pk)]}, dataset_versions=[data])
    r = release_release(actor=pm, release=release_freeze(actor=pm, release=r))
    then = _tick()
    r2 = release(pm, prod, version="2.0.0")
    release_release(actor=pm, release=release_freeze(actor=pm, release=r2))
    state = live_at(product=prod, at=then)
    assert state.release.id == r.pk
    assert state.fallbacks == [fb]
    assert state.settings["fallback"] == [str(fb.pk)]
    assert state.dataset_versions == [data]
    assert live_at(product=prod, at=timezone.now()).dataset_versions == []


def test_plan_changed_after_t_shows_old_values(pm):
    rel = released(pm)
    api = portal.api_publish(
        actor=pm,
        api=portal.api_create(
            actor=pm, product=rel.product, slug=f"a-{uuid.uuid4().hex[:6]}", name="A"
        ),
    )
    plan = portal.plan_create(
        actor=pm, api=api, slug="free", name="Free", requests_per_minute=30, approval_required=False
    )
    then = _tick()
    portal.plan_update(actor=pm, plan=plan, requests_per_minute=99)
    portal.plan_create(actor=pm, api=api, slug="pro", name="Pro", requests_per_minute=600)
    state = live_at(product=rel.product, at=then)
    (api_then,) = state.apis
    assert api_then.status == "published"
    assert [(p.slug, p.requests_per_minute) for p in api_then.plans] == [("free", 30)]
    now = live_at(product=rel.product, at=timezone.now())
    assert [(p.slug, p.requests_per_minute) for p in now.apis[0].plans] == [
        ("free", 99),
        ("pro", 600),
    ]
    # The same through the published API's own view of time, and its API endpoint.
    served = api_live_at(api=api, at=then)
    assert [(p.slug, p.requests_per_minute) for p in served.api.plans] == [("free", 30)]
    assert served.live.release.id == rel.pk
    client = Client()
    client.force_login(pm)
    body = client.get(f"/api/v1/apis/{api.pk}/live/", {"at": then.isoformat()}).json()
    assert [(p["slug"], p["requests_per_minute"]) for p in body["api"]["plans"]] == [("free", 30)]


def test_api_that_did_not_exist_yet_is_absent(pm):
    rel = released(pm)
    then = _tick()
    api = portal.api_create(
        actor=pm, product=rel.product, slug=f"a-{uuid.uuid4().hex[:6]}", name="A"
    )
    assert live_at(product=rel.product, at=then).apis == []
    with pytest.raises(ProductDidNotExist):
        api_live_at(api=api, at=then)


def test_api_pinned_vs_following(pm):
    first = released(pm)
    prod = first.product
    pinned = portal.api_create(
        actor=pm, product=prod, slug=f"p-{uuid.uuid4().hex[:6]}", name="P", release=first
    )
    following = portal.api_create(
        actor=pm, product=prod, slug=f"f-{uuid.uuid4().hex[:6]}", name="F"
    )
    second = release(pm, prod, "2.0.0")
    second = release_release(actor=pm, release=release_freeze(actor=pm, release=second))
    now = timezone.now()
    p = api_live_at(api=pinned, at=now)
    f = api_live_at(api=following, at=now)
    assert p.api.follows == "pinned" and p.live.release.id == first.pk
    assert p.live.release.status == "deprecated"  # the pinned release, as it was then
    assert f.api.follows == "product" and f.live.release.id == second.pk
    assert f.live.prompt_version == second.prompt_version


def test_parse_instant():
    assert parse_instant("2026-05-01T13:30:00Z") == dt.datetime(2026, 5, 1, 13, 30, tzinfo=dt.UTC)
    assert parse_instant("2026-05-01T15:30:00+02:00") == dt.datetime(
        2026, 5, 1, 13, 30, tzinfo=dt.UTC
    )
    assert parse_instant("2026-05-01T15:30:00 02:00").hour == 13  # "+" read as a space
    assert parse_instant("2026-05-01").day == 1
    assert parse_instant("") is not None and parse_instant(None) is not None
    for bad in ("yesterday", "2024-13-01T00:00:00Z", "1700000000", "2024-01-01T00:00:00+25:00"):
        with pytest.raises(ApplicationError) as exc:
            parse_instant(bad)
        assert "at" in exc.value.extra, bad
    with pytest.raises(ApplicationError):
        parse_instant("0001-01-01T00:00:00+05:00")  # not representable in UTC


# --- API -------------------------------------------------------------------------------------


def test_api_live_state_endpoint(client_for, pm):
    prod = product(pm)
    before = _tick()
    first = released(pm, prod)
    client = client_for(pm)
    url = f"/api/v1/products/{prod.pk}/live-state/"
    body = client.get(url).json()
    assert body["release"]["id"] == str(first.pk)
    assert body["release"]["fingerprint"] == first.fingerprint
    assert body["release"]["status"] == "released"
    assert body["product"]["owner_team"] == prod.owner_team.slug
    assert body["prompt_version"]["id"] == str(first.prompt_version_id)
    body = client.get(url, {"at": before.isoformat()}).json()
    assert body["release"] is None
    early = (prod.created_at - dt.timedelta(days=1)).isoformat()
    assert_error(client.get(url, {"at": early}), 404, "did_not_exist")
    for text in ("yesterday", "2024-13-01T00:00:00Z", "2024-01-01T00:00:00+25:00"):
        body = assert_error(client.get(url, {"at": text}), 400, "invalid")
        assert "at" in body["fields"]
    assert_error(client.get(f"/api/v1/products/{uuid.uuid4()}/live-state/"), 404)
    outsider = client_for(member(PRODUCT_MANAGER))
    assert_error(outsider.get(url), 404)


def test_api_endpoint_for_published_api(client_for, pm):
    rel = released(pm)
    api = portal.api_create(
        actor=pm, product=rel.product, slug=f"a-{uuid.uuid4().hex[:6]}", name="A"
    )
    client = client_for(pm)
    url = f"/api/v1/apis/{api.pk}/live/"
    body = client.get(url).json()
    assert body["api"]["slug"] == api.slug and body["api"]["follows"] == "product"
    assert body["live"]["release"]["id"] == str(rel.pk)
    assert_error(client.get(url, {"at": "nope"}), 400, "invalid")
    assert_error(client.get(url, {"at": "2000-01-01T00:00:00Z"}), 404, "did_not_exist")
    auditor = client_for(member(AUDITOR))
    assert auditor.get(url).status_code == 200


def test_live_query_count_is_constant(pm, django_assert_max_num_queries):
    rel = released(pm)
    for i in range(3):
        api = portal.api_create(
            actor=pm, product=rel.product, slug=f"q{i}-{uuid.uuid4().hex[:6]}", name="Q"
        )
        portal.plan_create(actor=pm, api=api, slug="free", name="F", requests_per_minute=5)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as few:
        live_at(product=rel.product, at=timezone.now())
    for i in range(5):
        api = portal.api_create(
            actor=pm, product=rel.product, slug=f"r{i}-{uuid.uuid4().hex[:6]}", name="R"
        )
        portal.plan_create(actor=pm, api=api, slug="free", name="F", requests_per_minute=5)
    with CaptureQueriesContext(connection) as many:
        state = live_at(product=rel.product, at=timezone.now())
    assert len(state.apis) == 8
    assert len(few) == len(many)


# --- pages -----------------------------------------------------------------------------------


def _web(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def test_product_live_page(pm):
    rel = released(pm)
    c = _web(pm)
    page = c.get(f"/products/{rel.product.slug}/live/")
    assert page.status_code == 200
    assert f'data-live-release="{rel.version}"' in page.content.decode()
    assert c.get(f"/products/{rel.product.pk}/live/").status_code == 200  # by id too
    bad = c.get(f"/products/{rel.product.slug}/live/", {"at": "2024-01-01T00:00:00+25:00"})
    assert bad.status_code == 400 and "data-live-error" in bad.content.decode()
    early = c.get(f"/products/{rel.product.slug}/live/", {"at": "2000-01-01T00:00"})
    assert early.status_code == 200 and "data-live-missing" in early.content.decode()
    assert (
        _web(member(PRODUCT_MANAGER)).get(f"/products/{rel.product.slug}/live/").status_code == 404
    )


def test_api_live_page(pm):
    rel = released(pm)
    api = portal.api_create(
        actor=pm, product=rel.product, slug=f"a-{uuid.uuid4().hex[:6]}", name="A"
    )
    page = _web(pm).get(f"/portal/apis/{api.slug}/live/")
    assert page.status_code == 200
    assert 'data-follows="product"' in page.content.decode()


def test_timeline_panel_renders_with_constant_queries(pm, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.compliance.services import incident_file

    first = released(pm)
    prod = first.product
    c = _web(pm)
    c.get(f"/products/{prod.pk}/")  # warm up
    with CaptureQueriesContext(connection) as few:
        page = c.get(f"/products/{prod.pk}/")
    html = page.content.decode()
    assert 'id="effectivity"' in html and 'data-period="1.0.0"' in html
    assert 'id="incidents"' in html
    r = first
    for i in range(3):
        nxt = release(pm, prod, f"1.{i + 1}.0")
        r = release_release(actor=pm, release=release_freeze(actor=pm, release=nxt))
        incident_file(actor=pm, product=prod, title=f"Outage {i}", release=r)
    with CaptureQueriesContext(connection) as many:
        page = c.get(f"/products/{prod.pk}/")
    html = page.content.decode()
    assert html.count("data-incident-marker") == 3
    assert 'data-period="1.3.0"' in html
    a = [q["sql"][:90] for q in few.captured_queries]
    b = [q["sql"][:90] for q in many.captured_queries]
    from collections import Counter

    assert len(a) == len(b), Counter(b) - Counter(a)


def test_timeline_chart_geometry(pm):
    rel = released(pm)
    items = effectivity_timeline(product=rel.product)
    chart = timeline_chart(items)
    assert len(chart.segments) == 1 and float(chart.segments[0].width) > 0
    assert timeline_chart([]) is None
    assert all(isinstance(i, Period | Marker) for i in items)

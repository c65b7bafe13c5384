"""The portfolio page (/portfolio/) and its CSV export: every product a user may see, by stage,
with owner, risk class, released release, open change requests, target metrics and 30-day cost;
filterable, paginated, htmx-aware, exported as CSV with an audit event, at a constant number of
queries however many products there are."""

import csv
import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.accounts.roles import ADMIN, AUDITOR, PRODUCT_MANAGER
from apps.audit.models import AuditEvent
from apps.gateway.models import ProviderCall
from apps.lifecycle.portfolio import CSV_COLUMNS, MEASURE_QUERIES_MAX
from tests.api_suite import last_seq, verbs_since
from tests.changes.helpers import released, submitted_cr
from tests.factories import member, product

from .helpers import brief, team_member

pytestmark = pytest.mark.django_db

URL = "/portfolio/"
EXPORT = "/portfolio/export.csv"


@pytest.fixture
def pm():
    return member(PRODUCT_MANAGER)


@pytest.fixture
def admin(pm):
    return team_member(pm, ADMIN)


def web(user) -> Client:
    c = Client()
    c.force_login(user)
    return c


def html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def listed(response) -> list[str]:
    """The product slugs of the page's rows, in order."""
    text = html(response)
    out, marker = [], 'data-portfolio-row="'
    start = text.find(marker)
    while start != -1:
        end = text.index('"', start + len(marker))
        out.append(text[start + len(marker) : end])
        start = text.find(marker, end)
    return out


def calls(prod, *costs, latency=900, days_ago=0):
    made = [
        ProviderCall.objects.create(
            product=prod, outcome="ok", cost=Decimal(cost), latency_ms=latency, tokens_in=10
        ).pk
        for cost in costs
    ]
    if days_ago:
        ProviderCall.objects.filter(pk__in=made).update(
            created_at=timezone.now() - timedelta(days=days_ago)
        )


def csv_rows(response) -> list[dict]:
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="portfolio-')
    body = b"".join(response.streaming_content) if response.streaming else response.content
    reader = csv.reader(io.StringIO(body.decode()))
    header = next(reader)
    assert header == CSV_COLUMNS
    return [dict(zip(header, row, strict=True)) for row in reader]


@pytest.fixture
def portfolio(pm, admin):
    """GIVEN a team with products in four stages: one in concept with a released release, an
    open change request, calls and a brief whose one target is met; one in design whose target
    is not met; one in production (high risk) with no brief; one in retired."""
    concept = product(pm, name="Alpha answers", slug="alpha-answers")
    rel = released(pm, concept, "1.2.0")
    submitted_cr(pm, baseline=rel)
    calls(concept, "1.25", "0.50")
    calls(concept, "9.00", days_ago=40)  # outside the 30 days
    brief(pm, concept, target_metrics=[{"metric": "p95_latency_ms", "threshold": 2000}])
    design = product(admin, name="Beta briefs", slug="beta-briefs", stage="design")
    calls(design, "0.10", latency=5000)
    brief(
        pm,
        design,
        target_metrics=[
            {"metric": "p95_latency_ms", "threshold": 2000},
            {"metric": "error_rate", "threshold": 0.1},
        ],
    )
    production = product(
        admin, name="Gamma gateway", slug="gamma-gateway", stage="production", risk_class="high"
    )
    retired = product(admin, name="Delta done", slug="delta-done", stage="retired")
    return {"concept": concept, "design": design, "production": production, "retired": retired}


# --- the page ----------------------------------------------------------------------------------


def test_page_lists_products_by_stage_with_their_figures(pm, portfolio):
    """GIVEN products in four stages WHEN the team's product manager opens the portfolio THEN
    they are listed in lifecycle order, each with owner, stage, risk class, released release,
    open change requests, metrics met and the cost of the last 30 days, under a summary bar."""
    response = web(pm).get(URL)
    assert listed(response) == ["alpha-answers", "beta-briefs", "gamma-gateway", "delta-done"]
    text = html(response)
    row = text[text.index('data-portfolio-row="alpha-answers"') :].split("</tr>")[0]
    assert f'href="/products/{portfolio["concept"].pk}/"' in row
    assert pm.memberships.first().team.slug in row
    assert "1.2.0" in row
    assert '<td class="num" data-open-changes>1</td>' in row
    assert "1 of 1 met" in row
    assert "$1.75" in row  # 1.25 + 0.50; the call of 40 days ago is not counted
    design = text[text.index('data-portfolio-row="beta-briefs"') :].split("</tr>")[0]
    assert "1 of 2 met" in design  # the error rate is met, the latency is not
    assert 'data-release><span class="faint">—' in design
    gamma = text[text.index('data-portfolio-row="gamma-gateway"') :].split("</tr>")[0]
    assert "risk-high" in gamma and 'data-metrics><span class="faint">—' in gamma
    assert "$0.00" in gamma
    assert "data-stage-summary" in text
    for stage in ("concept", "design", "production", "retired"):
        assert f'data-stage-group="{stage}"' in text
    summary = text[text.index("data-stage-summary") :]
    assert 'data-stage-count="concept"' in summary and 'href="?' not in summary
    assert 'href="/portfolio/?stage=development"' in summary  # every stage, even empty
    assert 'href="/portfolio/export.csv"' in text
    assert '<a href="/portfolio/" class="active" aria-current="page">Portfolio</a>' in text


def test_the_page_needs_a_login():
    response = Client().get(URL)
    assert response.status_code == 302 and "/login" in response["Location"]
    assert Client().get(EXPORT).status_code == 302


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"stage": "design"}, ["beta-briefs"]),
        ({"risk_class": "high"}, ["gamma-gateway"]),
        ({"risk_class": "minimal", "stage": "retired"}, ["delta-done"]),
        ({"q": "ALPHA"}, ["alpha-answers"]),
        ({"q": "gamma-gate"}, ["gamma-gateway"]),
        ({"met": "yes"}, ["alpha-answers"]),
        ({"met": "no"}, ["beta-briefs"]),
        ({"met": "none"}, ["gamma-gateway", "delta-done"]),
        ({"met": "no", "stage": "concept"}, []),
    ],
)
def test_each_filter_narrows(pm, portfolio, params, expected):
    assert listed(web(pm).get(URL, params)) == expected


def test_team_filter(pm, portfolio):
    auditor = member(AUDITOR)
    other_pm = member(PRODUCT_MANAGER)
    product(other_pm, slug="other-team-product")
    team = pm.memberships.first().team.slug
    expected = {p.slug for p in portfolio.values()}
    assert set(listed(web(auditor).get(URL, {"team": team}))) == expected
    other = other_pm.memberships.first().team.slug
    assert listed(web(auditor).get(URL, {"team": other})) == ["other-team-product"]
    out_of_scope = web(pm).get(URL, {"team": other})
    assert listed(out_of_scope) == []  # out of scope: nothing, and the form says which filter
    assert f'<option value="{other}" selected>' in html(out_of_scope)
    assert "No matching products" in html(out_of_scope)


def test_summary_counts_follow_the_filters_but_the_stage(pm, portfolio):
    text = html(web(pm).get(URL, {"stage": "design", "risk_class": "minimal"}))
    summary = text[text.index("data-stage-summary") : text.index("</section>")]
    counts = {
        s: summary.split(f'data-stage-count="{s}"')[1].split("<strong>")[1].split("<")[0]
        for s in ("concept", "design", "production", "retired")
    }
    assert counts == {"concept": "1", "design": "1", "production": "0", "retired": "1"}
    assert "All stages (3)" in summary
    assert "/portfolio/?stage=production&amp;risk_class=minimal" in summary


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"stage": "launched"}, "stage"),
        ({"risk_class": "extreme"}, "risk_class"),
        ({"team": "no such team!"}, "team"),
        ({"met": "maybe"}, "met"),
        ({"q": "x" * 101}, "q"),
        ({"q": "nul\x00byte"}, "q"),
        ({"page": "-3"}, None),
        ({"page": "9999"}, None),
    ],
)
def test_bad_filter_values_are_ignored_with_a_message(pm, portfolio, params, field):
    response = web(pm).get(URL, params)
    assert len(listed(response)) == 4  # the bad filter is ignored
    if field:
        assert f'data-filter-error="{field}"' in html(response)
    export = web(pm).get(EXPORT, params)
    if field:
        assert export.status_code == 400
        assert "cannot be applied" in export.content.decode()
    else:
        assert export.status_code == 200


def test_out_of_scope_products_are_not_listed_and_an_auditor_sees_all(pm, portfolio):
    other_pm = member(PRODUCT_MANAGER)
    product(other_pm, slug="zeta-elsewhere", name="Zeta elsewhere")
    assert "zeta-elsewhere" not in listed(web(pm).get(URL))
    assert listed(web(other_pm).get(URL)) == ["zeta-elsewhere"]
    auditor = member(AUDITOR)
    seen = listed(web(auditor).get(URL))
    assert {"zeta-elsewhere", *(p.slug for p in portfolio.values())} <= set(seen)
    rows = csv_rows(web(auditor).get(EXPORT))
    assert "zeta-elsewhere" in {r["slug"] for r in rows}
    assert "zeta-elsewhere" not in {r["slug"] for r in csv_rows(web(pm).get(EXPORT))}


def test_empty_states(pm, portfolio):
    text = html(web(pm).get(URL, {"q": "nothing-like-this"}))
    assert "No matching products" in text and "data-portfolio-row" not in text
    lonely = member(PRODUCT_MANAGER)
    text = html(web(lonely).get(URL))
    assert "No products yet" in text and "data-stage-summary" not in text


def test_htmx_renders_the_results_partial_only(pm, portfolio):
    c = web(pm)
    response = c.get(URL, {"stage": "production"}, HTTP_HX_REQUEST="true")
    text = html(response)
    assert "<html" not in text and 'class="mainnav"' not in text
    assert 'data-portfolio-row="gamma-gateway"' in text and "data-stage-summary" in text
    assert 'href="/portfolio/export.csv?stage=production"' in text
    assert "HX-Request" in response["Vary"]
    full = html(c.get(URL, {"stage": "production"}))
    assert "<html" in full and 'id="portfolio-results"' in full
    # htmx restoring a page from its history gets the whole page
    restore = c.get(URL, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert "<html" in html(restore)


def test_pagination_keeps_the_filters(admin):
    for i in range(27):
        product(admin, slug=f"p-{i:02d}", name=f"P {i:02d}", risk_class="limited")
    product(admin, slug="not-limited")
    c = web(admin)
    first = c.get(URL, {"risk_class": "limited"})
    assert len(listed(first)) == 25
    text = html(first)
    assert "?risk_class=limited&amp;page=2" in text
    second = c.get(URL, {"risk_class": "limited", "page": "2"})
    assert listed(second) == ["p-25", "p-26"]


# --- the CSV export ----------------------------------------------------------------------------


def test_csv_has_a_header_and_one_row_per_product_and_records_the_export(pm, portfolio):
    c = web(pm)
    seq = last_seq()
    rows = csv_rows(c.get(EXPORT))
    assert [r["slug"] for r in rows] == [
        "alpha-answers",
        "beta-briefs",
        "gamma-gateway",
        "delta-done",
    ]
    team = pm.memberships.first().team.slug
    assert rows[0] == {
        "slug": "alpha-answers",
        "name": "Alpha answers",
        "owner_team": team,
        "stage": "concept",
        "risk_class": "minimal",
        "release": "1.2.0",
        "open_change_requests": "1",
        "metrics_met": "1",
        "metrics_total": "1",
        "monthly_cost": "1.75",
    }
    assert (rows[1]["metrics_met"], rows[1]["metrics_total"]) == ("1", "2")
    assert (rows[2]["metrics_met"], rows[2]["metrics_total"], rows[2]["release"]) == ("", "", "")
    assert verbs_since(seq) == {"portfolio.exported": 1}
    event = AuditEvent.objects.get(seq__gt=seq)
    assert event.actor_id == pm.pk
    assert event.after == {"format": "csv", "count": 4, "filters": {}}


def test_csv_respects_the_filters(pm, portfolio):
    c = web(pm)
    seq = last_seq()
    rows = csv_rows(c.get(EXPORT, {"met": "none", "risk_class": "high"}))
    assert [r["slug"] for r in rows] == ["gamma-gateway"]
    event = AuditEvent.objects.get(seq__gt=seq, verb="portfolio.exported")
    assert event.after["count"] == 1
    assert event.after["filters"] == {"risk_class": "high", "met": "none"}
    assert csv_rows(c.get(EXPORT, {"q": "nothing"})) == []


def test_csv_is_not_paginated_and_quotes_formulas(admin):
    for i in range(30):
        product(admin, slug=f"bulk-{i:02d}", name=f"=HYPERLINK({i})")
    rows = csv_rows(web(admin).get(EXPORT, {"page": "2"}))
    assert len(rows) == 30
    assert all(r["name"].startswith("'=") for r in rows)


def test_an_auditor_may_export(pm, portfolio):
    c = web(member(AUDITOR))
    seq = last_seq()
    assert len(csv_rows(c.get(EXPORT))) >= 4
    assert verbs_since(seq) == {"portfolio.exported": 1}


# --- query counts ------------------------------------------------------------------------------


def _stocked(pm, admin, n, stages=("concept", "design", "production", "deprecated")):
    """``n`` products in several stages, each with a released release, an open change request
    and calls."""
    for i in range(n):
        prod = product(admin, stage=stages[i % len(stages)], risk_class="limited")
        rel = released(pm, prod)
        submitted_cr(pm, baseline=rel)
        calls(prod, "0.01")


def _queries(client, url, params=None) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url, params or {})
    assert response.status_code == 200
    return len(ctx)


def test_query_count_is_constant_in_the_number_of_products(pm, admin):
    """GIVEN 3 products WHEN 5 more are added (each with a release, an open change request and
    calls) THEN the page, a filtered page, the htmx partial and the export take exactly as many
    queries as before."""
    c = web(pm)
    _stocked(pm, admin, 3)
    few = {
        "page": _queries(c, URL),
        "filtered": _queries(c, URL, {"risk_class": "limited", "q": "product", "met": "none"}),
        "stage": _queries(c, URL, {"stage": "production"}),
    }
    with CaptureQueriesContext(connection) as partial_few:
        c.get(URL, HTTP_HX_REQUEST="true")
    _stocked(pm, admin, 5)
    many = {
        "page": _queries(c, URL),
        "filtered": _queries(c, URL, {"risk_class": "limited", "q": "product", "met": "none"}),
        "stage": _queries(c, URL, {"stage": "production"}),
    }
    with CaptureQueriesContext(connection) as partial_many:
        c.get(URL, HTTP_HX_REQUEST="true")
    assert len(listed(c.get(URL))) == 8
    assert few == many
    assert len(partial_few) == len(partial_many)
    # the export: constant too (plus the audit record's own writes)
    assert _queries(c, EXPORT) == _queries(c, EXPORT)
    export_few = _queries(c, EXPORT)
    _stocked(pm, admin, 4)
    assert _queries(c, EXPORT) == export_few


def test_only_products_with_targets_are_measured_within_the_bound(pm, admin):
    """GIVEN one product whose brief names a target WHEN products without targets are added THEN
    the query count stays the same; each further product with targets costs at most
    ``MEASURE_QUERIES_MAX`` queries (``metrics.measure``)."""
    c = web(pm)
    measured = product(pm)
    brief(pm, measured, target_metrics=[{"metric": "p95_latency_ms", "threshold": 2000}])
    _stocked(pm, admin, 2)
    one = _queries(c, URL)
    _stocked(pm, admin, 4)
    assert _queries(c, URL) == one
    for _ in range(3):
        prod = product(pm)
        brief(pm, prod, target_metrics=[{"metric": "error_rate", "threshold": 0.1}])
        calls(prod, "0.01")
    four = _queries(c, URL)
    assert one < four <= one + 3 * MEASURE_QUERIES_MAX

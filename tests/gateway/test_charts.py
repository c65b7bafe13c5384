"""The product page's "Calls, last 7 days": the per-day figures, the charts, the page's cost."""

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from apps.accounts.roles import PRODUCT_MANAGER
from apps.gateway import charts
from apps.gateway.models import ProviderCall
from apps.gateway.selectors import percentile_cont, provider_call_daily_stats

from ..compliance.test_timetravel import PRODUCT_PANEL_QUERIES as COMPLIANCE_PANEL_QUERIES
from ..factories import TeamFactory, member, product
from ..lifecycle.test_views import LIFECYCLE_PANEL_QUERIES
from ..portal.test_views import PRODUCT_PANEL_QUERIES as PORTAL_PRODUCT_PANEL_QUERIES

pytestmark = pytest.mark.django_db

# The product page without the panel (catalog, releases and change requests' sections), and
# what the panel adds: one query on PostgreSQL (per day and the total, with percentile_cont),
# two elsewhere (per day, then the ordered latencies for the percentiles).
# The portal's "Published APIs" section is part of the page without this panel.
PRODUCT_PAGE_QUERIES_WITHOUT_PANEL = (
    16 + PORTAL_PRODUCT_PANEL_QUERIES + COMPLIANCE_PANEL_QUERIES + LIFECYCLE_PANEL_QUERIES
)
PANEL_QUERIES = 1 if connection.vendor == "postgresql" else 2


def make_call(product, at: dt.datetime, **kwargs) -> ProviderCall:
    kwargs.setdefault("outcome", "ok")
    call = ProviderCall.objects.create(product=product, provider_model="echo", **kwargs)
    ProviderCall.objects.filter(pk=call.pk).update(created_at=at)
    return call


@pytest.fixture
def pm():
    return member(PRODUCT_MANAGER, TeamFactory())


@pytest.fixture
def prod(pm):
    return product(pm, slug="charted")


def _noon(days_ago: int, now: dt.datetime) -> dt.datetime:
    day = timezone.localdate(now) - dt.timedelta(days=days_ago)
    return timezone.make_aware(dt.datetime.combine(day, dt.time(12)))


NOW = timezone.make_aware(dt.datetime(2026, 3, 10, 18, 0))


@pytest.fixture
def week(prod, pm):
    """Calls on four of the last seven days, one day too old, one of another product."""
    latencies_today = list(range(10, 210, 10))  # 20 calls: 10, 20, ..., 200 ms
    for i, latency in enumerate(latencies_today):
        make_call(
            prod,
            _noon(0, NOW),
            latency_ms=latency,
            outcome="error" if i < 5 else "ok",
            cost=Decimal("0.01"),
        )
    for latency in (100, 300):
        make_call(prod, _noon(1, NOW), latency_ms=latency, cost=Decimal("0.5"))
    make_call(prod, _noon(4, NOW), latency_ms=70, outcome="error", cost=Decimal(0))
    make_call(prod, _noon(6, NOW) - dt.timedelta(hours=11, minutes=59), latency_ms=5)  # 00:01
    make_call(prod, _noon(7, NOW), latency_ms=9999)  # the day before the window
    make_call(product(pm), _noon(0, NOW), latency_ms=9999)  # another product
    make_call(prod, NOW + dt.timedelta(days=1), latency_ms=9999)  # after the window
    return latencies_today


def test_percentile_cont_interpolates_like_postgresql():
    assert percentile_cont([], 0.95) is None
    assert percentile_cont([7], 0.95) == 7
    assert percentile_cont([100, 300], 0.95) == pytest.approx(290)
    assert percentile_cont(list(range(10, 210, 10)), 0.95) == pytest.approx(190.5)
    assert percentile_cont([1, 2, 3, 4], 0.5) == pytest.approx(2.5)


def test_the_figures_per_day_are_right_and_empty_days_are_zero(prod, week):
    stats = provider_call_daily_stats(product=prod, days=7, now=NOW)
    today = timezone.localdate(NOW)
    assert [d.day for d in stats.days] == [today - dt.timedelta(days=6 - i) for i in range(7)]
    by_age = {(today - d.day).days: d for d in stats.days}

    assert (by_age[0].calls, by_age[0].errors) == (20, 5)
    assert by_age[0].error_rate == 0.25
    assert by_age[0].p95_ms == pytest.approx(190.5)
    assert by_age[0].cost == Decimal("0.20")

    assert (by_age[1].calls, by_age[1].errors, by_age[1].cost) == (2, 0, Decimal("1.0"))
    assert by_age[1].p95_ms == pytest.approx(290)
    assert (by_age[4].calls, by_age[4].errors, by_age[4].error_rate) == (1, 1, 1.0)
    assert by_age[4].p95_ms == 70
    assert (by_age[6].calls, by_age[6].p95_ms) == (1, 5)  # 00:01 on the window's first day

    for empty in (2, 3, 5):
        day = by_age[empty]
        assert (day.calls, day.errors, day.cost, day.p95_ms) == (0, 0, Decimal(0), None)
        assert day.error_rate is None

    total = stats.total
    assert (total.calls, total.errors) == (24, 6)
    assert total.cost == Decimal("1.20")
    every = sorted([*week, 100, 300, 70, 5])
    assert total.p95_ms == pytest.approx(percentile_cont(every, 0.95))
    assert not stats.empty


def test_days_follow_the_current_time_zone(settings, prod):
    """GIVEN the portal in Tokyo (UTC+9) WHEN a call is made at 20:00 UTC THEN it counts on the
    next day, Tokyo's."""
    settings.TIME_ZONE = "Asia/Tokyo"
    now = dt.datetime(2026, 3, 10, 21, 0, tzinfo=dt.UTC)  # 06:00 on the 11th in Tokyo
    make_call(prod, dt.datetime(2026, 3, 10, 20, 0, tzinfo=dt.UTC), latency_ms=50)
    make_call(prod, dt.datetime(2026, 3, 10, 14, 0, tzinfo=dt.UTC), latency_ms=60)  # 23:00
    stats = provider_call_daily_stats(product=prod, days=7, now=now)
    assert stats.days[-1].day == dt.date(2026, 3, 11)
    assert (stats.days[-1].calls, stats.days[-2].calls) == (1, 1)


def test_a_product_without_calls_is_empty(prod):
    stats = provider_call_daily_stats(product=prod)
    assert stats.empty
    assert len(stats.days) == 7
    assert all(d.calls == 0 for d in stats.days)


def test_the_figures_cost_one_query_on_postgresql_two_elsewhere(
    prod, week, django_assert_num_queries
):
    with django_assert_num_queries(PANEL_QUERIES):
        provider_call_daily_stats(product=prod, days=7, now=NOW)


# --- the charts --------------------------------------------------------------------------------


def test_nice_ceiling():
    assert [charts.nice_ceiling(v) for v in (0, 0.3, 1, 1.2, 2.2, 4, 7, 12, 190.5)] == [
        1,
        0.5,
        1,
        2,
        2.5,
        5,
        10,
        20,
        200,
    ]


def test_formats():
    assert charts.fmt_percent(0.25) == "25%"
    assert charts.fmt_percent(1 / 3) == "33.3%"
    assert charts.fmt_ms(190.4) == "190 ms"
    assert charts.fmt_ms(2500) == "2.50 s"
    assert charts.fmt_ms(3000) == "3 s"
    assert charts.fmt_cost(Decimal("1.2")) == "1.20"
    assert charts.fmt_cost(Decimal("0.0125")) == "0.0125"
    assert charts.fmt_cost(0) == "0"
    assert charts.fmt_cost(Decimal("0.0000205")) == "0.000021"


def test_bar_geometry_is_proportional_and_empty_days_are_stubs():
    days = [dt.date(2026, 3, 4) + dt.timedelta(days=i) for i in range(4)]
    chart = charts.bar_chart(
        key="calls",
        title="Calls",
        points=list(zip(days, [10, 0, 5, None], strict=True)),
        fmt=charts.fmt_count,
        total="15",
    )
    assert chart.scale == "10"
    heights = [float(b.height) for b in chart.bars]
    assert heights[0] == charts.PLOT
    assert heights[2] == pytest.approx(charts.PLOT / 2)
    assert [b.empty for b in chart.bars] == [False, True, False, True]
    assert float(chart.bars[0].y) == charts.TOP
    assert chart.bars[3].title == "Sat 7 Mar: no calls"
    assert "Wed 4 Mar: 10" in chart.description
    assert all("," not in b.x for b in chart.bars)


# --- the panel on the product page -------------------------------------------------------------


def _panel(html: str) -> str:
    return html.split('id="calls"', 1)[1].split('<div class="card"', 1)[0]


def test_the_product_page_shows_four_accessible_charts(client, pm, prod):
    now = timezone.now()
    make_call(prod, now, latency_ms=120, cost=Decimal("0.5"))
    make_call(prod, now - dt.timedelta(days=1), latency_ms=80, outcome="error")
    client.force_login(pm)
    html = client.get(reverse("product_detail", args=[prod.pk])).content.decode()
    panel = _panel(html)
    assert "Calls, last 7 days" in html
    assert panel.count('<svg viewBox="0 0 280 120" role="img"') == 4
    for key in ("calls", "errors", "p95", "cost"):
        assert f'aria-labelledby="calls-{key}-title calls-{key}-desc"' in panel
        assert f'<title id="calls-{key}-title">' in panel
    assert '<details class="chart-numbers">' in panel
    assert panel.count("<tr data-day=") == 7
    assert 'href="/calls/?product=charted"' in panel
    assert re.search(r'data-total="calls">2<', panel)
    assert re.search(r'data-total="errors">50%<', panel)
    assert "cdn" not in panel.lower() and "<script" not in panel


def test_the_panel_has_an_empty_state(client, pm, prod):
    client.force_login(pm)
    html = client.get(reverse("product_detail", args=[prod.pk])).content.decode()
    assert "No calls in the last 7 days" in _panel(html)
    assert "<svg" not in _panel(html)


def test_another_team_cannot_see_the_panel(client, prod):
    make_call(prod, timezone.now())
    client.force_login(member(PRODUCT_MANAGER))
    assert client.get(reverse("product_detail", args=[prod.pk])).status_code == 404


def test_the_product_page_query_count_with_the_panel(client, pm, prod, django_assert_num_queries):
    """GIVEN a product with calls on several days WHEN its page is read THEN it costs the page's
    queries plus the panel's, whatever the number of calls."""
    url = reverse("product_detail", args=[prod.pk])
    client.force_login(pm)
    client.get(url)
    now = timezone.now()
    for i in range(3):
        make_call(prod, now - dt.timedelta(days=i), latency_ms=10 * i)
    with django_assert_num_queries(PRODUCT_PAGE_QUERIES_WITHOUT_PANEL + PANEL_QUERIES):
        client.get(url)
    for i in range(30):
        make_call(prod, now - dt.timedelta(days=i % 7), latency_ms=i)
    with django_assert_num_queries(PRODUCT_PAGE_QUERIES_WITHOUT_PANEL + PANEL_QUERIES):
        response = client.get(url)
    assert response.status_code == 200

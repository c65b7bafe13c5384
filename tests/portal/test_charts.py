"""The portal's usage charts: five charts per window (7 days by day, 24 hours by hour) from the
usage buckets, with a text description and table rows; an empty window says so."""

import datetime as dt
from decimal import Decimal

from django.template.loader import render_to_string

from apps.portal.charts import DAYS, HOURS, usage_window, usage_windows
from apps.portal.selectors import UsageBucket

START = dt.datetime(2026, 3, 4, tzinfo=dt.UTC)


def _days(values: dict[int, dict]) -> list[UsageBucket]:
    return [
        UsageBucket(start=START + dt.timedelta(days=i), **values.get(i, {})) for i in range(DAYS)
    ]


def _hours(values: dict[int, dict]) -> list[UsageBucket]:
    return [
        UsageBucket(start=START + dt.timedelta(hours=i), **values.get(i, {})) for i in range(HOURS)
    ]


BUSY = {
    "requests": 10,
    "errors": 1,
    "rate_limited": 1,
    "tokens_in": 300,
    "tokens_out": 100,
    "cost": Decimal("0.25"),
    "latency_avg_ms": 200.0,
    "latency_max_ms": 900,
}


def test_a_day_window_with_data():
    window = usage_window(_days({2: BUSY, 5: {**BUSY, "requests": 30}}), period="day")
    assert not window.empty
    keys = [c.key for c in window.charts]
    assert keys == ["day-requests", "day-tokens", "day-cost", "day-errors", "day-latency"]
    requests = window.charts[0]
    assert requests.total == "40" and requests.scale == "50"
    assert len(requests.bars) == DAYS
    assert [b.empty for b in requests.bars] == [True, True, False, True, True, False, True]
    assert requests.bars[0].label == "We 4"
    assert (
        "Fri 6 Mar: 10" in requests.description and "Wed 4 Mar: no requests" in requests.description
    )
    tallest = max(float(b.height) for b in requests.bars)
    assert float(requests.bars[5].height) == tallest
    assert window.charts[1].total == "800"
    assert window.charts[2].total == "0.5"
    assert window.charts[3].total == "4"  # errors and rate-limited calls
    assert window.charts[4].total == "200 ms"
    assert window.totals["latency_max"] == "900 ms"
    assert len(window.rows) == DAYS and window.rows[2]["requests"] == 10
    assert window.rows[0]["cost"] == "—"


def test_an_hour_window_labels_every_sixth_hour():
    window = usage_window(_hours({23: BUSY}), period="hour")
    labels = [b.label for b in window.charts[0].bars]
    assert labels[0] == "00h" and labels[6] == "06h" and labels[1] == "" and len(labels) == 24
    assert "Wed 4 Mar 23:00: 10" in window.charts[0].description
    assert window.title.startswith("Last 24 hours")


def test_an_empty_window_has_no_charts():
    window = usage_window(_days({}), period="day")
    assert window.empty and window.charts == []
    assert window.totals["requests"] == 0 and window.totals["latency_avg"] == "—"


def test_usage_windows_ask_for_seven_days_and_twenty_four_hours():
    now = dt.datetime(2026, 3, 10, 15, 30, tzinfo=dt.UTC)
    asked = []

    def series(*, period, since, until):
        asked.append((period, since, until))
        return _days({}) if period == "day" else _hours({})

    day, hour = usage_windows(series, now=now)
    assert asked == [
        ("day", dt.datetime(2026, 3, 4, tzinfo=dt.UTC), now),
        ("hour", dt.datetime(2026, 3, 9, 16, tzinfo=dt.UTC), now),
    ]
    assert day.key == "day" and hour.key == "hour"


def test_the_chart_template_renders_an_accessible_svg():
    window = usage_window(_days({1: BUSY}), period="day")
    html = render_to_string(
        "portal/partials/usage.html", {"usage": [window], "usage_scope": "my-api"}
    )
    assert html.count("<svg") == 5
    assert 'role="img"' in html and '<desc id="usage-day-requests-desc">' in html
    assert '<table class="usage-table">' in html and "data-usage-empty" not in html
    empty = render_to_string(
        "portal/partials/usage.html",
        {"usage": [usage_window(_days({}), period="day")], "usage_scope": "my-api"},
    )
    assert "<svg" not in empty and "data-usage-empty" in empty

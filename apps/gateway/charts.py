"""Small bar charts drawn on the server as inline SVG: no JavaScript, nothing from a CDN.

``bar_chart`` turns a series of (day, value) points into the geometry of an SVG the template
draws (``templates/gateway/partials/bar_chart.html``), with a title and a text description of
every value for screen readers; the page also shows the numbers as a table.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from .selectors import DailyCallStats

WIDTH = 280
HEIGHT = 120
TOP = 16  # room for the scale's label
BOTTOM = 18  # room for the days' labels
PLOT = HEIGHT - TOP - BOTTOM
BAR_SHARE = 0.64  # of each day's slot


def _n(value: float) -> str:
    """An SVG coordinate: a plain string, so the template never localizes it (``12,5``)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Bar:
    # SVG coordinates, as strings (see ``_n``)
    x: str
    y: str
    width: str
    height: str
    label_x: str
    label: str  # the day, short ("Tu 5")
    title: str  # the day and its value, for the tooltip
    empty: bool  # no value that day (drawn as a stub on the baseline)


@dataclass(frozen=True)
class Chart:
    key: str
    title: str
    total: str  # the window's figure, shown beside the title
    scale: str  # the value of the top of the plot
    description: str  # every day's value, in words
    bars: list[Bar]
    width: int = WIDTH
    height: int = HEIGHT
    top: int = TOP
    baseline: int = TOP + PLOT
    label_y: int = HEIGHT - 4


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5 or 5 times a power of ten at or above ``value``: a round top
    for a scale."""
    if not value or value <= 0 or not math.isfinite(value):
        return 1.0
    exponent = math.floor(math.log10(value))
    for mantissa in (1, 2, 2.5, 5, 10):
        top = mantissa * 10**exponent
        if top >= value * (1 - 1e-12):
            return float(top)
    return float(10 ** (exponent + 1))  # pragma: no cover - the loop always returns


def _day_label(day: dt.date) -> str:
    return f"{day:%a}"[:2] + f" {day.day}"


def day_long(day: dt.date) -> str:
    return f"{day:%a} {day.day} {day:%b}"


def bar_chart(
    *,
    key: str,
    title: str,
    points: Sequence[tuple[dt.date, float | None]],
    fmt: Callable[[float], str],
    total: str,
    top: float | None = None,
) -> Chart:
    values = [v for _, v in points if v is not None]
    scale = top if top is not None else nice_ceiling(max(values, default=0))
    slot = WIDTH / max(len(points), 1)
    width = slot * BAR_SHARE
    bars = []
    words = []
    for i, (day, value) in enumerate(points):
        shown = "no calls" if value is None else fmt(value)
        height = 0.0 if value is None else PLOT * min(max(value, 0) / scale, 1)
        if value is not None and value > 0:
            height = max(height, 1.5)  # a small value stays visible
        x = i * slot + (slot - width) / 2
        empty = value is None or value <= 0
        if empty:
            height = 1.0  # a stub on the baseline: "nothing", not "missing"
        bars.append(
            Bar(
                x=_n(x),
                y=_n(TOP + PLOT - height),
                width=_n(width),
                height=_n(height),
                label_x=_n(i * slot + slot / 2),
                label=_day_label(day),
                title=f"{day_long(day)}: {shown}",
                empty=empty,
            )
        )
        words.append(f"{day_long(day)}: {shown}")
    return Chart(
        key=key,
        title=title,
        total=total,
        scale=fmt(scale),
        description="; ".join(words) + ".",
        bars=bars,
    )


# --- formats -----------------------------------------------------------------------------------


def fmt_count(value: float) -> str:
    return f"{round(value):,}"


def fmt_percent(value: float) -> str:
    """``value`` is a fraction: 0.125 → ``12.5%``."""
    percent = value * 100
    return f"{percent:.0f}%" if percent == round(percent) else f"{percent:.1f}%"


def fmt_ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s".replace(".00 s", " s")
    return f"{value:.0f} ms"


def fmt_cost(value: float | Decimal) -> str:
    value = float(value)
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    if value >= 0.0001:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    # two significant digits, never in scientific notation (2.1e-05 → 0.000021)
    return f"{float(f'{value:.2g}'):.10f}".rstrip("0").rstrip(".")


# --- the product page's four charts -------------------------------------------------------------


def call_charts(stats: DailyCallStats) -> list[Chart]:
    days = stats.days
    total = stats.total
    rate_values = [d.error_rate for d in days]
    return [
        bar_chart(
            key="calls",
            title="Calls",
            points=[(d.day, d.calls) for d in days],
            fmt=fmt_count,
            total=fmt_count(total.calls),
        ),
        bar_chart(
            key="errors",
            title="Error rate",
            points=[(d.day, r) for d, r in zip(days, rate_values, strict=True)],
            fmt=fmt_percent,
            total=fmt_percent(total.error_rate) if total.error_rate is not None else "—",
            top=min(nice_ceiling(max((r for r in rate_values if r), default=0) * 100) / 100, 1),
        ),
        bar_chart(
            key="p95",
            title="p95 latency",
            points=[(d.day, d.p95_ms) for d in days],
            fmt=fmt_ms,
            total=fmt_ms(total.p95_ms) if total.p95_ms is not None else "—",
        ),
        bar_chart(
            key="cost",
            title="Cost",
            points=[(d.day, float(d.cost) if d.calls else None) for d in days],
            fmt=fmt_cost,
            total=fmt_cost(total.cost),
        ),
    ]

"""Usage charts of the portal: requests, tokens, cost, errors and latency of an API or an
application, over the last 7 days by day and the last 24 hours by hour.

Built on the gateway's chart geometry (``apps.gateway.charts``: the ``Chart``/``Bar`` shapes,
the scale and the number formats), with labels per period: a day's bars read "Tu 5", an hour's
"14h" (every sixth hour, so the labels do not overlap). The figures come from
``selectors.usage_series`` (one bucket per period, empty ones included); every chart has a
text description and the page shows the numbers as a table too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.utils import timezone

from apps.gateway.charts import (
    BAR_SHARE,
    PLOT,
    TOP,
    WIDTH,
    Bar,
    Chart,
    day_long,
    fmt_cost,
    fmt_count,
    fmt_ms,
    nice_ceiling,
)

DAYS = 7
HOURS = 24
HOUR_LABEL_EVERY = 6


def _coord(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Window:
    key: str  # "day" or "hour": the period of the buckets
    title: str  # "Last 7 days, per day"
    charts: list[Chart]
    rows: list[dict]
    empty: bool
    totals: dict = field(default_factory=dict)


def _local(start: dt.datetime) -> dt.datetime:
    """Buckets are UTC hours and days: label them in UTC too."""
    return start.astimezone(dt.UTC) if timezone.is_aware(start) else start


def _label(period: str, start: dt.datetime, index: int) -> str:
    local = _local(start)
    if period == "day":
        return f"{local:%a}"[:2] + f" {local.day}"
    return f"{local:%H}h" if index % HOUR_LABEL_EVERY == 0 else ""


def _long(period: str, start: dt.datetime) -> str:
    local = _local(start)
    if period == "day":
        return day_long(local.date())
    return f"{day_long(local.date())} {local:%H}:00"


def series_chart(
    *,
    key: str,
    title: str,
    period: str,
    points: Sequence[tuple[dt.datetime, float | None]],
    fmt: Callable[[float], str],
    total: str,
    nothing: str = "no requests",
) -> Chart:
    """One small bar chart of ``points`` (bucket start, value or None), in the gateway's
    geometry."""
    values = [v for _, v in points if v is not None]
    scale = nice_ceiling(max(values, default=0))
    slot = WIDTH / max(len(points), 1)
    width = slot * BAR_SHARE
    bars, words = [], []
    for i, (start, value) in enumerate(points):
        shown = nothing if value is None else fmt(value)
        empty = value is None or value <= 0
        height = 1.0 if empty else max(PLOT * min(value / scale, 1), 1.5)
        x = i * slot + (slot - width) / 2
        when = _long(period, start)
        bars.append(
            Bar(
                x=_coord(x),
                y=_coord(TOP + PLOT - height),
                width=_coord(width),
                height=_coord(height),
                label_x=_coord(i * slot + slot / 2),
                label=_label(period, start, i),
                title=f"{when}: {shown}",
                empty=empty,
            )
        )
        words.append(f"{when}: {shown}")
    return Chart(
        key=key,
        title=title,
        total=total,
        scale=fmt(scale),
        description="; ".join(words) + ".",
        bars=bars,
    )


def _tokens(b) -> int:
    return (b.tokens_in or 0) + (b.tokens_out or 0)


def usage_window(buckets: Sequence, *, period: str) -> Window:
    """The five charts and the table rows of one window of usage buckets."""
    buckets = list(buckets)
    requests = sum(b.requests for b in buckets)
    errors = sum(b.errors for b in buckets)
    limited = sum(b.rate_limited for b in buckets)
    tokens = sum(_tokens(b) for b in buckets)
    cost = sum((Decimal(b.cost or 0) for b in buckets), Decimal(0))
    weighted = sum((b.latency_avg_ms or 0) * b.requests for b in buckets if b.requests)
    latency_avg = weighted / requests if requests else None
    latency_max = max((b.latency_max_ms or 0 for b in buckets if b.requests), default=None)
    title = (
        f"Last {DAYS} days, per day (UTC)"
        if period == "day"
        else f"Last {HOURS} hours, per hour (UTC)"
    )
    empty = requests == 0

    def pts(value):
        return [(b.start, value(b) if b.requests else None) for b in buckets]

    charts = []
    if not empty:
        charts = [
            series_chart(
                key=f"{period}-requests",
                title="Requests",
                period=period,
                points=pts(lambda b: b.requests),
                fmt=fmt_count,
                total=fmt_count(requests),
            ),
            series_chart(
                key=f"{period}-tokens",
                title="Tokens",
                period=period,
                points=pts(_tokens),
                fmt=fmt_count,
                total=fmt_count(tokens),
            ),
            series_chart(
                key=f"{period}-cost",
                title="Cost",
                period=period,
                points=pts(lambda b: float(b.cost or 0)),
                fmt=fmt_cost,
                total=fmt_cost(cost),
            ),
            series_chart(
                key=f"{period}-errors",
                title="Errors",
                period=period,
                points=pts(lambda b: b.errors + b.rate_limited),
                fmt=fmt_count,
                total=fmt_count(errors + limited),
            ),
            series_chart(
                key=f"{period}-latency",
                title="Average latency",
                period=period,
                points=pts(lambda b: b.latency_avg_ms),
                fmt=fmt_ms,
                total=fmt_ms(latency_avg) if latency_avg is not None else "—",
            ),
        ]
    rows = [
        {
            "start": b.start,
            "label": _long(period, b.start),
            "requests": b.requests,
            "errors": b.errors,
            "rate_limited": b.rate_limited,
            "tokens_in": b.tokens_in,
            "tokens_out": b.tokens_out,
            "cost": fmt_cost(b.cost or 0) if b.requests else "—",
            "latency_avg": fmt_ms(b.latency_avg_ms) if b.requests and b.latency_avg_ms else "—",
            "latency_max": fmt_ms(b.latency_max_ms) if b.requests and b.latency_max_ms else "—",
        }
        for b in buckets
    ]
    return Window(
        key=period,
        title=title,
        charts=charts,
        rows=rows,
        empty=empty,
        totals={
            "requests": requests,
            "errors": errors,
            "rate_limited": limited,
            "tokens": tokens,
            "cost": fmt_cost(cost),
            "latency_avg": fmt_ms(latency_avg) if latency_avg is not None else "—",
            "latency_max": fmt_ms(latency_max) if latency_max else "—",
        },
    )


def usage_windows(series: Callable[..., Sequence], *, now: dt.datetime | None = None) -> list:
    """The two windows (7 days by day, 24 hours by hour) from ``series(period=, since=)``, a
    ``usage_series`` bound to an API, an application or a subscription."""
    now = (now or timezone.now()).astimezone(dt.UTC)
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    hour_start = now.replace(minute=0, second=0, microsecond=0)
    return [
        usage_window(
            series(period="day", since=day_start - dt.timedelta(days=DAYS - 1), until=now),
            period="day",
        ),
        usage_window(
            series(period="hour", since=hour_start - dt.timedelta(hours=HOURS - 1), until=now),
            period="hour",
        ),
    ]

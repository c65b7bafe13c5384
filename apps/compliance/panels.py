"""The product page's compliance sections: the effectivity timeline (a small inline SVG and a
list, with a "What was live at…" form) and the incidents (with a filing form for the team).

Both panels together cost a fixed number of queries (``effectivity_timeline`` is three).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.urls import reverse
from django.utils import timezone

from apps.catalog.panels import register_product_panel

from .forms import IncidentForm
from .selectors import can_file_incident
from .timetravel import Marker, Period, effectivity_timeline

WIDTH = 280
HEIGHT = 48
BAR_Y = 14
BAR_H = 16
INCIDENTS_SHOWN = 5
COLOURS = ("#4f6bed", "#2e9e6a", "#c77c1b", "#8a4fd1", "#1b8fa6")
SEVERITY_COLOURS = {"sev1": "#c62828", "sev2": "#e65100", "sev3": "#f9a825", "sev4": "#78909c"}


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Segment:
    x: str
    width: str
    colour: str
    label: str
    title: str
    period: Period


@dataclass(frozen=True)
class Dot:
    x: str
    colour: str
    title: str
    marker: Marker


@dataclass(frozen=True)
class TimelineChart:
    segments: list[Segment]
    dots: list[Dot]
    start: dt.datetime
    end: dt.datetime
    description: str
    width: int = WIDTH
    height: int = HEIGHT
    bar_y: int = BAR_Y
    bar_h: int = BAR_H
    dot_y: int = BAR_Y + BAR_H + 8


def timeline_chart(items: list, *, now: dt.datetime | None = None) -> TimelineChart | None:
    periods = [i for i in items if isinstance(i, Period)]
    markers = [i for i in items if isinstance(i, Marker)]
    if not periods and not markers:
        return None
    now = now or timezone.now()
    start = min([p.start for p in periods] + [m.at for m in markers])
    end = max([now] + [m.at for m in markers])
    span = max((end - start).total_seconds(), 1.0)

    def x(at: dt.datetime) -> float:
        return (at - start).total_seconds() / span * WIDTH

    segments = []
    for i, p in enumerate(periods):
        left, right = x(p.start), x(p.end or end)
        segments.append(
            Segment(
                _n(left),
                _n(max(right - left, 1.5)),
                COLOURS[i % len(COLOURS)],
                p.version if right - left > 7 * len(p.version) else "",
                f"{p.version}: {p.start:%Y-%m-%d %H:%M} → "
                + (f"{p.end:%Y-%m-%d %H:%M}" if p.end else "now"),
                p,
            )
        )
    dots = [
        Dot(
            _n(min(max(x(m.at), 3), WIDTH - 3)),
            SEVERITY_COLOURS.get(m.incident.severity, "#78909c"),
            f"{m.incident.severity.upper()} {m.incident.title} ({m.at:%Y-%m-%d %H:%M})",
            m,
        )
        for m in markers
    ]
    description = "; ".join(s.title for s in segments) or "No release has been live yet"
    if dots:
        description += f"; {len(dots)} incident(s): " + "; ".join(d.title for d in dots)
    return TimelineChart(segments, dots, start, end, description)


@register_product_panel
def timeline_panel(request, product, can_change: bool) -> dict:
    items = effectivity_timeline(product=product)
    periods = [i for i in items if isinstance(i, Period)]
    return {
        "order": 15,
        "template": "compliance/partials/timeline_panel.html",
        "periods": list(reversed(periods)),
        "chart": timeline_chart(items),
        "live_url": reverse("product_live", args=[product.slug]),
        "now": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
    }


@register_product_panel
def incidents_panel(request, product, can_change: bool) -> dict:
    from .selectors import incident_list_for_product

    incidents = list(incident_list_for_product(product=product)[: INCIDENTS_SHOWN + 1])
    can_file = can_file_incident(request.user, product)
    return {
        "order": 16,
        "template": "compliance/partials/incident_panel.html",
        "incidents": incidents[:INCIDENTS_SHOWN],
        "more": len(incidents) > INCIDENTS_SHOWN,
        "can_file": can_file,
        "form": IncidentForm(product=product) if can_file else None,
        "list_url": reverse("product_incidents", args=[product.slug]),
    }

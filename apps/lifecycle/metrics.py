"""Target metrics of a product's brief, measured.

A target is ``{"metric", "op", "threshold"}`` (and ``"suite"`` for a pass rate):

- ``pass_rate``: the pass rate (0..1) of the latest succeeded evaluation run of the named suite
  (slug of one of the owner team's suites) against the product's released release (before a
  release: against its newest release that has one);
- ``p95_latency_ms``, ``error_rate`` (0..1), ``cost_per_1k_calls``: the product's provider calls
  of the last ``WINDOW_DAYS`` days (gateway, playground and evaluation traffic alike).

Each measurement carries its value (None: nothing measured yet), whether the target is met, and
a short series for a trend chart (the last runs, or one point a day).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from apps.catalog.models import Product
from apps.core.exceptions import invalid
from apps.evaluations.aggregates import percentile
from apps.evaluations.models import EvalRun, EvalSuite, RunState
from apps.gateway.models import CallOutcome, ProviderCall
from apps.releases.models import Release, ReleaseStatus

WINDOW_DAYS = 7
TREND_RUNS = 10

METRICS: dict[str, dict[str, Any]] = {
    "pass_rate": {
        "label": "Pass rate",
        "op": ">=",
        "unit": "",
        "range": (0, 1),
        "source": "evaluation",
    },
    "p95_latency_ms": {
        "label": "p95 latency",
        "op": "<=",
        "unit": "ms",
        "range": (0, None),
        "source": "gateway",
    },
    "error_rate": {
        "label": "Error rate",
        "op": "<=",
        "unit": "",
        "range": (0, 1),
        "source": "gateway",
    },
    "cost_per_1k_calls": {
        "label": "Cost per 1,000 calls",
        "op": "<=",
        "unit": "$",
        "range": (0, None),
        "source": "gateway",
    },
}
OPS = (">=", "<=", "=")


def clean_targets(value: Any, *, product: Product) -> list[dict]:
    """Validate a brief's target metrics; a suite is named by the slug of one of the owner
    team's suites."""
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise invalid("target_metrics", "a list of {metric, op, threshold[, suite]}.")
    out, seen = [], set()
    for i, raw in enumerate(value):
        where = f"target_metrics[{i}]"
        if not isinstance(raw, dict):
            raise invalid(where, "an object {metric, op, threshold[, suite]}.")
        metric = raw.get("metric")
        if metric not in METRICS:
            raise invalid(where + ".metric", f"one of {', '.join(METRICS)}.")
        spec = METRICS[metric]
        op = raw.get("op") or spec["op"]
        if op not in OPS:
            raise invalid(where + ".op", f"one of {', '.join(OPS)}.")
        threshold = raw.get("threshold")
        if isinstance(threshold, str):
            try:
                threshold = float(threshold)
            except ValueError:
                threshold = None
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int | float)
            or not math.isfinite(threshold)
        ):
            raise invalid(where + ".threshold", "a number.")
        low, high = spec["range"]
        if threshold < low or (high is not None and threshold > high):
            bound = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise invalid(where + ".threshold", f"{spec['label']} is {bound}.")
        target = {"metric": metric, "op": op, "threshold": threshold}
        if metric == "pass_rate":
            suite = str(raw.get("suite") or "").strip()
            if not suite:
                raise invalid(where + ".suite", "name the evaluation suite (its slug).")
            if not EvalSuite.objects.filter(
                owner_team_id=product.owner_team_id, slug=suite
            ).exists():
                raise invalid(
                    where + ".suite", f"no suite {suite!r} in team {product.owner_team.slug}."
                )
            target["suite"] = suite
        key = (metric, target.get("suite"))
        if key in seen:
            raise invalid(where, "this metric is already targeted.")
        seen.add(key)
        out.append(target)
    return out


def describe(target: dict) -> str:
    spec = METRICS[target["metric"]]
    what = spec["label"] + (f" of suite {target['suite']}" if target.get("suite") else "")
    unit = spec["unit"]
    threshold = target["threshold"]
    shown = f"{unit}{threshold}" if unit == "$" else f"{threshold}{(' ' + unit) if unit else ''}"
    return f"{what} {target['op'].replace('>=', '≥').replace('<=', '≤')} {shown}"


def is_met(value: float | None, op: str, threshold: float) -> bool | None:
    if value is None:
        return None
    if op == ">=":
        return value >= threshold
    if op == "<=":
        return value <= threshold
    return abs(value - threshold) < 1e-9


@dataclass
class Measurement:
    target: dict
    label: str
    value: float | None
    met: bool | None
    source: str
    detail: str = ""
    trend: list[float] = field(default_factory=list)
    run_id: Any = None


@dataclass
class _Traffic:
    days: list[dt.date]
    by_day: dict[dt.date, dict[str, Any]]
    latencies: list[int]
    calls: int
    errors: int
    cost: Decimal


def _traffic(product: Product, now: dt.datetime) -> _Traffic:
    since = now - dt.timedelta(days=WINDOW_DAYS)
    calls = ProviderCall.objects.filter(product=product, created_at__gte=since)
    rows = (
        calls.annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(
            n=Count("id"),
            errors=Count("id", filter=~Q(outcome=CallOutcome.OK)),
            cost=Sum("cost"),
        )
        .order_by("day")
    )
    by_day = {r["day"]: r for r in rows}
    latencies: dict[dt.date, list[int]] = {}
    for created, latency in calls.filter(outcome=CallOutcome.OK).values_list(
        "created_at", "latency_ms"
    ):
        latencies.setdefault(created.date(), []).append(latency)
    for day, values in latencies.items():
        values.sort()
        by_day.setdefault(day, {"n": 0, "errors": 0, "cost": Decimal(0)})["p95"] = percentile(
            values, 95
        )
    all_latencies = sorted(v for values in latencies.values() for v in values)
    first = (now - dt.timedelta(days=WINDOW_DAYS - 1)).date()
    days = [first + dt.timedelta(days=i) for i in range(WINDOW_DAYS)]
    return _Traffic(
        days=days,
        by_day=by_day,
        latencies=all_latencies,
        calls=sum(r["n"] for r in by_day.values()),
        errors=sum(r["errors"] for r in by_day.values()),
        cost=sum((r["cost"] or Decimal(0) for r in by_day.values()), Decimal(0)),
    )


def _gateway_value(metric: str, n: int, errors: int, cost: Decimal, latencies) -> float | None:
    if metric == "p95_latency_ms":
        return float(percentile(latencies, 95)) if latencies else None
    if not n:
        return None
    if metric == "error_rate":
        return round(errors / n, 4)
    return round(float(cost) / n * 1000, 6)


def measure(
    *,
    product: Product,
    targets: list[dict] | None = None,
    release: Release | None = None,
    now: dt.datetime | None = None,
) -> list[Measurement]:
    """Each target of ``targets`` (default: the brief in force) with its measured value, against
    ``release`` (default: the released release) for evaluation metrics."""
    from .selectors import brief_in_force

    now = now or timezone.now()
    if targets is None:
        brief = brief_in_force(product=product)
        targets = brief.target_metrics if brief else []
    if not targets:
        return []
    if release is None:
        release = Release.objects.filter(product=product, status=ReleaseStatus.RELEASED).first()
    out: list[Measurement] = []
    traffic = None
    suites = {t["suite"] for t in targets if t["metric"] == "pass_rate"}
    runs_by_suite: dict[str, list[EvalRun]] = {}
    if suites:
        runs = (
            EvalRun.objects.filter(
                release__product=product,
                state=RunState.SUCCEEDED,
                suite_version__suite__slug__in=suites,
                suite_version__suite__owner_team_id=product.owner_team_id,
            )
            .select_related("suite_version__suite", "release")
            .order_by("-finished_at", "-created_at")
        )
        for run in runs[:200]:
            runs_by_suite.setdefault(run.suite_version.suite.slug, []).append(run)
    for target in targets:
        spec = METRICS[target["metric"]]
        if target["metric"] == "pass_rate":
            runs = runs_by_suite.get(target["suite"], [])
            chosen = next((r for r in runs if release and r.release_id == release.pk), None)
            if chosen is None and release is None and runs:
                chosen = runs[0]
            value = chosen.pass_rate if chosen else None
            detail = (
                f"run of {chosen.finished_at:%Y-%m-%d} on release {chosen.release.version}"
                if chosen and chosen.finished_at
                else "no succeeded run of this suite on the released release"
                if release
                else "no succeeded run yet"
            )
            trend = [r.pass_rate for r in reversed(runs[:TREND_RUNS]) if r.pass_rate is not None]
            out.append(
                Measurement(
                    target=target,
                    label=describe(target),
                    value=value,
                    met=is_met(value, target["op"], target["threshold"]),
                    source=spec["source"],
                    detail=detail,
                    trend=trend,
                    run_id=chosen.pk if chosen else None,
                )
            )
            continue
        traffic = traffic or _traffic(product, now)
        value = _gateway_value(
            target["metric"], traffic.calls, traffic.errors, traffic.cost, traffic.latencies
        )
        trend = []
        for day in traffic.days:
            row = traffic.by_day.get(day)
            if not row or not row.get("n"):
                continue
            point = (
                row.get("p95")
                if target["metric"] == "p95_latency_ms"
                else _gateway_value(
                    target["metric"], row["n"], row["errors"], row["cost"] or Decimal(0), []
                )
            )
            if point is not None:
                trend.append(float(point))
        out.append(
            Measurement(
                target=target,
                label=describe(target),
                value=value,
                met=is_met(value, target["op"], target["threshold"]),
                source=spec["source"],
                detail=f"{traffic.calls} calls in the last {WINDOW_DAYS} days"
                if traffic.calls
                else f"no calls in the last {WINDOW_DAYS} days",
                trend=trend,
            )
        )
    return out

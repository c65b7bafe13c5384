"""A run's figures, computed from its results (never accumulated: a redelivered chunk cannot
count twice).

``run_aggregates(run)`` reads the run's results once and returns the JSON stored in
``EvalRun.aggregates``::

    {
      "pass_rate": 0.8,                       # passed / total cases of the run, 0..1
      "total": 50, "completed": 50, "passed": 40, "failed": 8, "errored": 2,
      "per_assertion": {"contains": 0.9},     # pass rate of each assertion type's checks
      "assertion_counts": {"contains": {"passed": 45, "total": 50}},
      "latency_ms": {"p50": 420, "p95": 910}, # calls that answered (errors left out)
      "tokens": {"in": 5210, "out": 1804},
      "cost": "0.01234000",                   # a decimal string, in the price table's currency
      "groups": {                             # fairness/robustness groups (cases with ``vary``)
        "names": {"vary": "name", "values": {"Aisha": 1.0, "John": 0.5},
                  "counts": {"Aisha": 2, "John": 2}, "gap": 0.5}
      },
      "duration_seconds": 12.3                # from started to finished (or to now)
    }

Percentiles are nearest-rank (as in ``evaluations.comparison``): p50 of 1..10 is 5, p95 is 10.
A case with an ``error`` outcome (its call failed) counts as not passed and has no checks; its
latency is left out of the percentiles (it measures the failure, not the answer). A group's
value is the case's variable named by ``vary`` (text as is; other JSON as compact JSON; a case
without the variable is ``(missing)``); the gap is the highest value pass rate minus the lowest,
over the values of the group (0 with one value).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.utils import timezone

MISSING = "(missing)"


def percentile(values: list[int | float], p: float) -> int | float | None:
    """Nearest-rank percentile (``p`` in 0..100); None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _rate(passed: int, total: int) -> float | None:
    return passed / total if total else None


def vary_value(variables: Mapping[str, Any] | None, name: str) -> str:
    """How a case's varied variable is labelled in its group's report."""
    if not isinstance(variables, Mapping) or name not in variables:
        return MISSING
    value = variables[name]
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Row:
    """What the figures need of one result (and its case)."""

    outcome: str
    latency_ms: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: Decimal = Decimal(0)
    checks: list = field(default_factory=list)
    group: str = ""
    vary: str = ""
    variables: dict = field(default_factory=dict)


def aggregate(rows: Iterable[Row], *, total: int, duration_seconds: float | None = None) -> dict:
    """The figures of a run whose results are ``rows`` and which has ``total`` cases."""
    passed = errored = completed = 0
    tokens_in = tokens_out = 0
    cost = Decimal(0)
    latencies: list[int] = []
    per_type: dict[str, list[int]] = {}
    groups: dict[str, dict[str, Any]] = {}
    for row in rows:
        completed += 1
        ok = row.outcome == "pass"
        passed += ok
        if row.outcome == "error":
            errored += 1
        else:
            latencies.append(int(row.latency_ms or 0))
        tokens_in += int(row.tokens_in or 0)
        tokens_out += int(row.tokens_out or 0)
        cost += Decimal(row.cost or 0)
        for check in row.checks or []:
            if not isinstance(check, Mapping) or not check.get("type"):
                continue
            tally = per_type.setdefault(str(check["type"]), [0, 0])
            tally[1] += 1
            tally[0] += bool(check.get("passed"))
        if row.group and row.vary:
            group = groups.setdefault(row.group, {"vary": row.vary, "tally": {}})
            tally = group["tally"].setdefault(vary_value(row.variables, row.vary), [0, 0])
            tally[1] += 1
            tally[0] += ok
    report_groups = {}
    for name in sorted(groups):
        tally = groups[name]["tally"]
        values = {value: t[0] / t[1] for value, t in sorted(tally.items())}
        report_groups[name] = {
            "vary": groups[name]["vary"],
            "values": values,
            "counts": {value: t[1] for value, t in sorted(tally.items())},
            "gap": (max(values.values()) - min(values.values())) if values else 0.0,
        }
    figures = {
        "pass_rate": _rate(passed, total),
        "total": total,
        "completed": completed,
        "passed": passed,
        "failed": completed - passed - errored,
        "errored": errored,
        "per_assertion": {kind: t[0] / t[1] for kind, t in sorted(per_type.items())},
        "assertion_counts": {
            kind: {"passed": t[0], "total": t[1]} for kind, t in sorted(per_type.items())
        },
        "latency_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        "tokens": {"in": tokens_in, "out": tokens_out},
        "cost": str(cost),
        "groups": report_groups,
        "duration_seconds": None if duration_seconds is None else round(duration_seconds, 3),
    }
    return figures


RESULT_FIELDS = (
    "outcome",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "cost",
    "checks",
    "case__group",
    "case__vary",
    "case__variables",
)


def run_rows(run) -> Iterable[Row]:
    """The run's results as rows, read in chunks (one query per 2,000 results)."""
    from .models import EvalResult

    values = EvalResult.objects.filter(run=run).order_by().values_list(*RESULT_FIELDS)
    for outcome, latency, t_in, t_out, cost, checks, group, vary, variables in values.iterator(
        chunk_size=2000
    ):
        yield Row(
            outcome=outcome,
            latency_ms=latency,
            tokens_in=t_in,
            tokens_out=t_out,
            cost=cost,
            checks=checks,
            group=group,
            vary=vary,
            variables=variables,
        )


def run_aggregates(run, *, now=None) -> dict:
    """The figures of ``run`` from its stored results."""
    duration = None
    if run.started_at is not None:
        end = run.finished_at or now or timezone.now()
        duration = max(0.0, (end - run.started_at).total_seconds())
    return aggregate(run_rows(run), total=run.total, duration_seconds=duration)

"""Two runs side by side: per case, what changed from run ``a`` (the old one, usually the
baseline) to run ``b`` (the new one, usually the proposed release), and the metric deltas.

Cases are matched by ``key``, so two versions of one suite compare too. A case is

- ``regressed``: it passed in ``a`` and fails or errors in ``b``;
- ``improved``: it failed or errored in ``a`` and passes in ``b``;
- ``unchanged``: it passes in both, or passes in neither;
- ``new``: only ``b`` has it (its suite version added it, or only ``b`` ran it);
- ``missing``: only ``a`` has it (``b``'s suite version dropped it, or ``b`` ended without it);
- ``pending``: a run that is still going has no result for it yet.

Reads only (no writes, no permission rules: callers pass runs they may see). The results are
read in one query without their outputs; ``attach_outputs`` reads the outputs of the rows a
page shows, in one more.
"""

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .aggregates import percentile
from .models import EvalCase, EvalResult, EvalRun, ResultOutcome

REGRESSED = "regressed"
IMPROVED = "improved"
UNCHANGED = "unchanged"
NEW = "new"
MISSING = "missing"
PENDING = "pending"
CHANGE_KINDS = (REGRESSED, IMPROVED, UNCHANGED, NEW, MISSING, PENDING)
# The order a reviewer reads them in: what got worse first.
CHANGE_ORDER = {kind: i for i, kind in enumerate(CHANGE_KINDS)}
CHANGE_LABELS = {
    REGRESSED: "regressed",
    IMPROVED: "improved",
    UNCHANGED: "unchanged",
    NEW: "new",
    MISSING: "missing",
    PENDING: "pending",
}


@dataclass
class CaseRow:
    """One case in both runs. ``a``/``b`` are the results (None when that run has none)."""

    key: str
    position: int
    change: str
    a: EvalResult | None = None
    b: EvalResult | None = None

    @property
    def label(self) -> str:
        return CHANGE_LABELS[self.change]

    @property
    def latency_delta(self) -> int | None:
        if self.a is None or self.b is None:
            return None
        return self.b.latency_ms - self.a.latency_ms


@dataclass
class Metric:
    """One figure of both runs. ``better`` is ``"better"``, ``"worse"`` or ``"same"`` when the
    direction means something (pass rate up, latency and cost down), else None."""

    key: str
    label: str
    a: Any
    b: Any
    delta: Any
    relative: float | None
    better: str | None
    unit: str = ""  # "rate" (0..1), "ms", "money" or "" (a count)

    def show(self, value, *, signed: bool = False) -> str:
        """``value`` as people read it: a rate as a percentage, milliseconds, money."""
        if value is None:
            return "—"
        sign = "+" if signed and value > 0 else ""
        if self.unit == "rate":
            return f"{sign}{value * 100:.1f}%" if not signed else f"{sign}{value * 100:.1f} pts"
        if self.unit == "ms":
            return f"{sign}{value:.0f} ms"
        if self.unit == "money":
            text = f"{Decimal(value).quantize(Decimal('0.000001')).normalize():f}"
            return f"{sign}{text}"
        return f"{sign}{value}"

    @property
    def a_display(self) -> str:
        return self.show(self.a)

    @property
    def b_display(self) -> str:
        return self.show(self.b)

    @property
    def delta_display(self) -> str:
        if self.delta is None:
            return "—"
        text = self.show(self.delta, signed=True)
        if self.relative is not None and self.unit != "rate" and round(self.relative * 100):
            text += f" ({self.relative * 100:+.0f}%)"
        return text


@dataclass
class AssertionDelta:
    """How often one kind of assertion held in each run (over the results that checked it)."""

    type: str
    a_passed: int
    a_total: int
    b_passed: int
    b_total: int

    @staticmethod
    def _rate(passed: int, total: int) -> float | None:
        return passed / total if total else None

    @property
    def a_rate(self) -> float | None:
        return self._rate(self.a_passed, self.a_total)

    @property
    def b_rate(self) -> float | None:
        return self._rate(self.b_passed, self.b_total)

    @property
    def delta(self) -> float | None:
        if self.a_rate is None or self.b_rate is None:
            return None
        return self.b_rate - self.a_rate

    @staticmethod
    def _show(passed: int, total: int) -> str:
        return f"{passed}/{total} ({passed / total * 100:.0f}%)" if total else "—"

    @property
    def a_display(self) -> str:
        return self._show(self.a_passed, self.a_total)

    @property
    def b_display(self) -> str:
        return self._show(self.b_passed, self.b_total)

    @property
    def delta_display(self) -> str:
        return "—" if self.delta is None else f"{self.delta * 100:+.0f} pts"

    @property
    def better(self) -> str | None:
        return _direction(self.delta, True)


@dataclass
class Comparison:
    a: EvalRun
    b: EvalRun
    rows: list[CaseRow]
    metrics: list[Metric]
    assertions: list[AssertionDelta]
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.a.is_finished and self.b.is_finished

    def of(self, change: str) -> list[CaseRow]:
        return [row for row in self.rows if row.change == change]

    @property
    def regressed(self) -> list[CaseRow]:
        return self.of(REGRESSED)

    @property
    def improved(self) -> list[CaseRow]:
        return self.of(IMPROVED)

    def metric(self, key: str) -> Metric:
        return next(m for m in self.metrics if m.key == key)

    def by_change(self) -> list[CaseRow]:
        """The rows, what got worse first, then in suite order."""
        return sorted(self.rows, key=lambda r: (CHANGE_ORDER[r.change], r.position))


# --- figures -----------------------------------------------------------------------------------


def _passed(result: EvalResult | None) -> bool:
    return result is not None and result.outcome == ResultOutcome.PASS


def run_pass_rate(run: EvalRun, results: list[EvalResult]) -> float | None:
    """The worker's figure once the run is finished; before, the rate over the results so far."""
    if run.is_finished and run.pass_rate is not None:
        return run.pass_rate
    if not results:
        return None
    return sum(1 for r in results if _passed(r)) / len(results)


def run_cost(run: EvalRun, results: list[EvalResult]) -> Decimal:
    """The worker's total once the run is finished; before, the sum of the results so far."""
    if run.is_finished and run.cost:
        return Decimal(run.cost)
    return sum((Decimal(r.cost) for r in results), Decimal(0))


def _direction(delta, higher_is_better: bool | None) -> str | None:
    if higher_is_better is None or delta is None:
        return None
    if delta == 0:
        return "same"
    return "better" if (delta > 0) == higher_is_better else "worse"


def _metric(key, label, a, b, higher_is_better, unit="") -> Metric:
    delta = None if a is None or b is None else b - a
    relative = None
    if delta is not None and a:
        relative = float(delta) / float(a)
    return Metric(
        key=key,
        label=label,
        a=a,
        b=b,
        delta=delta,
        relative=relative,
        better=_direction(delta, higher_is_better),
        unit=unit,
    )


def _metrics(run_a, results_a, run_b, results_b) -> list[Metric]:
    def latencies(results):
        return [r.latency_ms for r in results if r.outcome != ResultOutcome.ERROR]

    def total(results, name):
        return sum(getattr(r, name) for r in results)

    return [
        _metric(
            "pass_rate",
            "Pass rate",
            run_pass_rate(run_a, results_a),
            run_pass_rate(run_b, results_b),
            True,
            "rate",
        ),
        _metric(
            "passed",
            "Cases passed",
            sum(1 for r in results_a if _passed(r)),
            sum(1 for r in results_b if _passed(r)),
            True,
        ),
        _metric(
            "errored",
            "Cases errored",
            sum(1 for r in results_a if r.outcome == ResultOutcome.ERROR),
            sum(1 for r in results_b if r.outcome == ResultOutcome.ERROR),
            False,
        ),
        _metric(
            "latency_p50",
            "Latency p50",
            percentile(latencies(results_a), 50),
            percentile(latencies(results_b), 50),
            False,
            "ms",
        ),
        _metric(
            "latency_p95",
            "Latency p95",
            percentile(latencies(results_a), 95),
            percentile(latencies(results_b), 95),
            False,
            "ms",
        ),
        _metric(
            "tokens_in",
            "Tokens in",
            total(results_a, "tokens_in"),
            total(results_b, "tokens_in"),
            None,
        ),
        _metric(
            "tokens_out",
            "Tokens out",
            total(results_a, "tokens_out"),
            total(results_b, "tokens_out"),
            None,
        ),
        _metric(
            "cost", "Cost", run_cost(run_a, results_a), run_cost(run_b, results_b), False, "money"
        ),
    ]


def _assertions(results_a, results_b) -> list[AssertionDelta]:
    counts: dict[str, list[int]] = {}
    for side, results in ((0, results_a), (1, results_b)):
        for result in results:
            for check in result.checks or []:
                if not isinstance(check, dict) or not check.get("type"):
                    continue
                tally = counts.setdefault(str(check["type"]), [0, 0, 0, 0])
                tally[side * 2 + 1] += 1
                if check.get("passed"):
                    tally[side * 2] += 1
    return [
        AssertionDelta(type=kind, a_passed=t[0], a_total=t[1], b_passed=t[2], b_total=t[3])
        for kind, t in sorted(counts.items())
    ]


def _change(case_in_a: bool, case_in_b: bool, ra, rb, run_a, run_b) -> str:
    if not case_in_a:
        return NEW
    if not case_in_b:
        return MISSING
    if (ra is None and not run_a.is_finished) or (rb is None and not run_b.is_finished):
        return PENDING
    if ra is None:
        return NEW
    if rb is None:
        return MISSING
    if _passed(ra) and not _passed(rb):
        return REGRESSED
    if not _passed(ra) and _passed(rb):
        return IMPROVED
    return UNCHANGED


# --- the comparison ----------------------------------------------------------------------------


def compare_runs(a: EvalRun, b: EvalRun) -> Comparison:
    """Compare run ``a`` (old) with run ``b`` (new), in two queries whatever the number of
    cases: the cases of both suite versions, and the results of both runs (without outputs)."""
    versions = {a.suite_version_id, b.suite_version_id}
    cases = list(
        EvalCase.objects.filter(suite_version_id__in=versions)
        .only("id", "key", "position", "suite_version_id")
        .order_by("position")
    )
    results = list(
        EvalResult.objects.filter(run_id__in={a.pk, b.pk}).defer("output", "error").order_by()
    )
    by_case: dict[Any, dict[Any, EvalResult]] = {a.pk: {}, b.pk: {}}
    for result in results:
        by_case[result.run_id][result.case_id] = result
    keys_a = {c.key: c for c in cases if c.suite_version_id == a.suite_version_id}
    keys_b = {c.key: c for c in cases if c.suite_version_id == b.suite_version_id}
    rows = []
    for key in dict.fromkeys([*keys_a, *keys_b]):
        case_a, case_b = keys_a.get(key), keys_b.get(key)
        ra = by_case[a.pk].get(case_a.pk) if case_a else None
        rb = by_case[b.pk].get(case_b.pk) if case_b else None
        rows.append(
            CaseRow(
                key=key,
                position=(case_b or case_a).position,
                change=_change(case_a is not None, case_b is not None, ra, rb, a, b),
                a=ra,
                b=rb,
            )
        )
    rows.sort(key=lambda r: (r.position, r.key))
    results_a, results_b = list(by_case[a.pk].values()), list(by_case[b.pk].values())
    counts = dict.fromkeys(CHANGE_KINDS, 0)
    for row in rows:
        counts[row.change] += 1
    return Comparison(
        a=a,
        b=b,
        rows=rows,
        metrics=_metrics(a, results_a, b, results_b),
        assertions=_assertions(results_a, results_b),
        counts=counts,
    )


def attach_outputs(rows: list[CaseRow]) -> list[CaseRow]:
    """Read the outputs and errors of ``rows``' results (one query) onto them."""
    wanted = [r for row in rows for r in (row.a, row.b) if r is not None]
    if not wanted:
        return rows
    texts = {
        pk: (output, error)
        for pk, output, error in EvalResult.objects.filter(
            pk__in=[r.pk for r in wanted]
        ).values_list("pk", "output", "error")
    }
    for result in wanted:
        result.output, result.error = texts.get(result.pk, ("", ""))
    return rows


# --- plain data (API, evidence) ----------------------------------------------------------------


def _plain(value):
    if isinstance(value, Decimal):
        return str(value)
    return value


def metric_dict(metric: Metric) -> dict:
    return {
        "key": metric.key,
        "label": metric.label,
        "a": _plain(metric.a),
        "b": _plain(metric.b),
        "delta": _plain(metric.delta),
        "relative": metric.relative,
        "better": metric.better,
        "unit": metric.unit,
    }


def result_dict(result: EvalResult | None, *, outputs: bool) -> dict | None:
    if result is None:
        return None
    data = {
        "id": str(result.pk),
        "outcome": result.outcome,
        "latency_ms": result.latency_ms,
        "tokens_in": result.tokens_in,
        "tokens_out": result.tokens_out,
        "cost": str(result.cost),
        "checks": result.checks,
    }
    if outputs:
        data |= {"output": result.output, "error": result.error}
    return data


def comparison_dict(comparison: Comparison, *, rows: list[CaseRow] | None = None) -> dict:
    """The comparison as JSON-ready data; ``rows`` (with outputs attached) limits the cases."""
    with_outputs = rows is not None
    rows = comparison.rows if rows is None else rows
    return {
        "finished": comparison.finished,
        "counts": comparison.counts,
        "regressed": [row.key for row in comparison.regressed],
        "improved": [row.key for row in comparison.improved],
        "metrics": [metric_dict(m) for m in comparison.metrics],
        "assertions": [
            {
                "type": d.type,
                "a_passed": d.a_passed,
                "a_total": d.a_total,
                "b_passed": d.b_passed,
                "b_total": d.b_total,
                "a_rate": d.a_rate,
                "b_rate": d.b_rate,
                "delta": d.delta,
            }
            for d in comparison.assertions
        ],
        "cases": [
            {
                "key": row.key,
                "position": row.position,
                "change": row.change,
                "a": result_dict(row.a, outputs=with_outputs),
                "b": result_dict(row.b, outputs=with_outputs),
            }
            for row in rows
        ],
    }

"""The evaluation gate of a change request: the approval policy's ``evaluation_gate``
(``{suite, min_pass_rate, no_regressions, max_cost_increase}``), judged on the runs the change
started when it was submitted.

- **Start** (``gate_start_runs``, on submit): the suite's latest version is pinned; the baseline
  release (the product's released release, if any) gets a run unless it already has one on that
  version that succeeded or is still going (that run is re-used); the proposed release always
  gets a fresh run. Runs are enqueued when the submit commits.
- **Verdict** (``gate_status``): *pending* while a run it needs is queued or running; *failed*
  when such a run failed or was cancelled, or when a criterion does not hold once both are done;
  *passed* when the proposed run succeeded, its pass rate is at least ``min_pass_rate``, no case
  regressed against the baseline's run (``no_regressions``, when there is a baseline), and its
  cost is at most the baseline's * (1 + ``max_cost_increase``) (when set and the baseline's run
  cost something).

The change-request services call these through the gate registry (``apps.changes.gates``); the
registration is in ``EvaluationsConfig.ready``. Nothing here writes but ``gate_start_runs``.
"""

import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.db import transaction
from django.db.models import Case, IntegerField, Value, When

from apps.audit.services import audit_record
from apps.core.exceptions import ApplicationError, Conflict

from .comparison import Comparison, compare_runs
from .models import CrRole, EvalRun, EvalSuite, EvalSuiteVersion, RunState

if TYPE_CHECKING:
    from apps.changes.gates import GateVerdict

GATE_NAME = "evaluation"
GATE_LABEL = "evaluation gate"
POLICY_KEY = "evaluation_gate"
LIVE_STATES = (RunState.QUEUED, RunState.RUNNING)
FLOAT_SLACK = 1e-9  # 27/30 must count as 0.9
LISTED_CASES = 5  # regressed case keys named in a reason before "and N more"

NOT_REQUIRED = "not_required"
NOT_STARTED = "not_started"
PENDING = "pending"
PASSED = "passed"
FAILED = "failed"
SKIPPED = "skipped"


@dataclass
class Check:
    """One line of the gate's checklist: ``state`` is passed, failed, pending or skipped."""

    key: str
    label: str
    state: str
    detail: str = ""


@dataclass
class GateStatus:
    required: bool
    passed: bool
    pending: bool
    state: str
    reasons: list[str] = field(default_factory=list)
    config: dict | None = None
    suite: EvalSuite | None = None
    suite_version: EvalSuiteVersion | None = None
    baseline_run: EvalRun | None = None
    proposed_run: EvalRun | None = None
    comparison: Comparison | None = None
    checks: list[Check] = field(default_factory=list)
    figures: dict = field(default_factory=dict)

    @property
    def runs(self) -> list[EvalRun]:
        return [r for r in (self.baseline_run, self.proposed_run) if r is not None]

    def evidence(self) -> dict:
        """What an approval relies on: the run ids and the gate's figures (JSON-ready)."""
        return {
            "suite": str(self.suite.pk) if self.suite else None,
            "suite_version": str(self.suite_version.pk) if self.suite_version else None,
            "suite_version_number": self.suite_version.version if self.suite_version else None,
            "baseline_run": str(self.baseline_run.pk) if self.baseline_run else None,
            "proposed_run": str(self.proposed_run.pk) if self.proposed_run else None,
            "gate": {**(self.config or {}), **self.figures},
        }


# --- the configuration ------------------------------------------------------------------------


def _bad(message: str, why: str) -> ApplicationError:
    return ApplicationError("invalid", message, {"evaluation_gate": [why]})


def gate_config_clean(*, product, value: Any) -> dict | None:
    """The policy's ``evaluation_gate`` checked and completed with its defaults (400 on bad
    input): ``suite`` a suite of the product's team with at least one version,
    ``min_pass_rate`` 0..1 (default 1), ``no_regressions`` a boolean (default true),
    ``max_cost_increase`` a fraction ≥ 0 (0.1 = +10 %) or null (no limit, the default)."""
    if value in (None, "", {}):
        return None
    if not isinstance(value, dict) or not value.get("suite"):
        raise _bad(
            "evaluation_gate must be {suite, min_pass_rate, no_regressions, max_cost_increase}.",
            "Bad gate.",
        )
    unknown = sorted(set(value) - {"suite", "min_pass_rate", "no_regressions", "max_cost_increase"})
    if unknown:
        raise _bad(f"evaluation_gate: unknown keys {', '.join(unknown)}.", "Unknown key.")
    try:
        suite_id = uuid.UUID(str(value["suite"]))
    except ValueError:
        suite = None
    else:
        suite = EvalSuite.objects.filter(pk=suite_id).first()
    if suite is None or suite.owner_team_id != product.owner_team_id:
        raise _bad(
            f"evaluation_gate.suite: no evaluation suite {value['suite']} of team "
            f"{product.owner_team.slug}; the gate must use a suite of the product's team.",
            "Unknown suite.",
        )
    if not EvalSuiteVersion.objects.filter(suite=suite).exists():
        raise _bad(
            f"evaluation_gate.suite: suite {suite.slug} has no version yet; add cases to it "
            "before a policy gates on it.",
            "Empty suite.",
        )
    rate = value.get("min_pass_rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise _bad("evaluation_gate.min_pass_rate must be between 0 and 1.", "Bad pass rate.")
    no_regressions = value.get("no_regressions", True)
    if not isinstance(no_regressions, bool):
        raise _bad("evaluation_gate.no_regressions must be true or false.", "Not a boolean.")
    max_cost = value.get("max_cost_increase")
    if max_cost is not None and (
        isinstance(max_cost, bool) or not isinstance(max_cost, int | float) or max_cost < 0
    ):
        raise _bad(
            "evaluation_gate.max_cost_increase must be a fraction of at least 0 (0.1 allows "
            "+10 %), or null for no limit.",
            "Bad cost increase.",
        )
    return {
        "suite": str(suite.pk),
        "min_pass_rate": float(rate),
        "no_regressions": no_regressions,
        "max_cost_increase": None if max_cost is None else float(max_cost),
    }


def _config_of(change_request) -> dict | None:
    snapshot = change_request.policy_snapshot or {}
    return snapshot.get(POLICY_KEY)


def _with_defaults(config: dict) -> dict:
    return {
        "suite": str(config["suite"]),
        "min_pass_rate": float(config.get("min_pass_rate", 1.0)),
        "no_regressions": bool(config.get("no_regressions", True)),
        "max_cost_increase": config.get("max_cost_increase"),
    }


# --- starting the runs ------------------------------------------------------------------------


def _baseline_candidate(*, release, suite_version) -> EvalRun | None:
    """The baseline's run a gate uses: the latest that succeeded, else the latest still going,
    else the latest (failed or cancelled) — one query."""
    rank = Case(
        When(state=RunState.SUCCEEDED, then=Value(0)),
        When(state__in=LIVE_STATES, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )
    return (
        EvalRun.objects.filter(release=release, suite_version=suite_version)
        .select_related("suite_version", "suite_version__suite", "release", "release__product")
        .annotate(gate_rank=rank)
        .order_by("gate_rank", "-created_at")
        .first()
    )


def gate_start_runs(change_request, actor, config: dict | None = None) -> dict:
    """Start the runs the gate needs (called inside the submit transaction; the runs are
    enqueued on commit). Returns ``{"baseline_run", "proposed_run", "reused_baseline"}``.

    Refuses (409 ``gate_unavailable``) when the gate's suite is gone or has no version, so a
    change is never submitted under a gate that cannot run."""
    from .runs import eval_run_create, latest_suite_version

    config = config if config is not None else _config_of(change_request)
    if not config:
        return {}
    cr = change_request
    with transaction.atomic():
        suite = EvalSuite.objects.filter(pk=config["suite"]).first()
        version = latest_suite_version(suite) if suite else None
        if version is None:
            raise Conflict(
                "gate_unavailable",
                "The approval policy's evaluation gate cannot run: its suite "
                + (f"{suite.slug} has no current version" if suite else "no longer exists")
                + ". Ask a team admin to fix the policy, then submit again.",
            )
        baseline_run, reused = None, False
        if cr.baseline_id:
            existing = _baseline_candidate(release=cr.baseline, suite_version=version)
            if existing is not None and (
                existing.state == RunState.SUCCEEDED or existing.state in LIVE_STATES
            ):
                baseline_run, reused = existing, True
            else:
                baseline_run = eval_run_create(
                    actor=actor,
                    suite_version=version,
                    release=cr.baseline,
                    change_request=cr,
                    cr_role=CrRole.BASELINE,
                )
        proposed_run = eval_run_create(
            actor=actor,
            suite_version=version,
            release=cr.proposed,
            change_request=cr,
            cr_role=CrRole.PROPOSED,
        )
        started = {
            "suite_version": str(version.pk),
            "baseline_run": str(baseline_run.pk) if baseline_run else None,
            "proposed_run": str(proposed_run.pk),
            "reused_baseline": reused,
        }
        audit_record(
            actor=actor,
            verb="evaluation_gate.started",
            obj=cr,
            product_id=cr.product_id,
            after={"suite": f"{version.suite.slug}@v{version.version}", **started},
        )
    return started


# --- the verdict --------------------------------------------------------------------------------


def _pct(fraction: float) -> str:
    return f"{fraction * 100:+.0f}%"


def _run_name(run: EvalRun, side: str) -> str:
    version = run.release.version if run.release_id else "the prompt and model"
    return f"the {side} run ({version})"


def _run_problem(run: EvalRun | None, side: str, release_version: str) -> str | None:
    """Why a finished run cannot be judged (None when it succeeded)."""
    if run is None:
        return (
            f"the {side} release {release_version} has no run on this suite version; withdraw "
            "and submit the change again to start it"
        )
    if run.state == RunState.FAILED:
        why = f": {run.error}" if run.error else ""
        return f"{_run_name(run, side)} failed{why}; withdraw and submit again to re-run it"
    if run.state == RunState.CANCELLED:
        return f"{_run_name(run, side)} was cancelled; withdraw and submit again to re-run it"
    return None


def _progress(run: EvalRun, side: str) -> str:
    return f"{side} {run.completed}/{run.total} cases {run.get_state_display().lower()}"


def _name_cases(keys: list[str]) -> str:
    shown = ", ".join(keys[:LISTED_CASES])
    more = len(keys) - LISTED_CASES
    return shown + (f" and {more} more" if more > 0 else "")


def _pass_rate(run: EvalRun) -> float | None:
    """The worker's figure once finished; before, the rate over the cases done so far."""
    if run.is_finished and run.pass_rate is not None:
        return run.pass_rate
    counted = run.total if run.is_finished else run.completed
    return run.passed / counted if counted else None


def _checks(status: GateStatus, cr) -> None:
    """Fill the checklist, the reasons and the figures of two finished, succeeded runs (or
    mark what is still pending)."""
    config = status.config
    proposed, baseline = status.proposed_run, status.baseline_run
    done = proposed is not None and proposed.state == RunState.SUCCEEDED
    comparison = status.comparison
    # Pass rate.
    minimum = config["min_pass_rate"]
    rate = _pass_rate(proposed) if proposed is not None else None
    label = f"Pass rate ≥ {minimum:.2f}"
    if not done:
        state = PENDING
        detail = f"{rate:.2f} so far" if rate is not None else "waiting for results"
        status.checks.append(Check("pass_rate", label, state, detail))
    else:
        passed_count = proposed.passed
        detail = f"{rate:.2f} ({passed_count} of {proposed.total} cases passed)"
        if rate is not None and rate + FLOAT_SLACK >= minimum:
            status.checks.append(Check("pass_rate", label, PASSED, detail))
        else:
            status.checks.append(Check("pass_rate", label, FAILED, detail))
            status.reasons.append(
                f"pass rate {rate or 0:.2f} < {minimum:.2f} ({passed_count} of "
                f"{proposed.total} cases passed)"
            )
    status.figures["pass_rate"] = rate
    both_done = done and (baseline is None or baseline.state == RunState.SUCCEEDED)
    # No regressions.
    if config["no_regressions"]:
        label = "No regressions against the baseline"
        if not cr.baseline_id:
            status.checks.append(Check("no_regressions", label, SKIPPED, "no baseline release"))
        elif comparison is None or not both_done:
            regressed = [r.key for r in comparison.regressed] if comparison else []
            detail = f"{len(regressed)} so far" if regressed else "waiting for both runs"
            status.checks.append(Check("no_regressions", label, PENDING, detail))
        else:
            regressed = [r.key for r in comparison.regressed]
            status.figures["regressed"] = regressed
            if regressed:
                reason = (
                    f"{len(regressed)} case{'s' if len(regressed) != 1 else ''} regressed: "
                    f"{_name_cases(regressed)}"
                )
                status.checks.append(Check("no_regressions", label, FAILED, reason))
                status.reasons.append(reason)
            else:
                status.checks.append(Check("no_regressions", label, PASSED, "none regressed"))
    # Cost.
    max_increase = config["max_cost_increase"]
    if max_increase is not None:
        label = f"Cost at most {_pct(max_increase)} over the baseline"
        if not cr.baseline_id:
            status.checks.append(Check("cost", label, SKIPPED, "no baseline release"))
        elif not both_done or baseline is None:
            status.checks.append(Check("cost", label, PENDING, "waiting for both runs"))
        else:
            base_cost = Decimal(baseline.cost)
            new_cost = Decimal(proposed.cost)
            status.figures |= {"baseline_cost": str(base_cost), "proposed_cost": str(new_cost)}
            if base_cost <= 0:
                status.checks.append(
                    Check("cost", label, SKIPPED, "the baseline's run cost nothing: no ratio")
                )
            else:
                increase = float((new_cost - base_cost) / base_cost)
                status.figures["cost_increase"] = increase
                detail = f"{_pct(increase)} ({new_cost.normalize()} vs {base_cost.normalize()})"
                if new_cost <= base_cost * (1 + Decimal(str(max_increase))):
                    status.checks.append(Check("cost", label, PASSED, detail))
                else:
                    reason = f"cost {_pct(increase)} > {_pct(max_increase)} allowed " + (
                        f"({new_cost.normalize()} vs {base_cost.normalize()})"
                    )
                    status.checks.append(Check("cost", label, FAILED, reason))
                    status.reasons.append(reason)


def gate_status(change_request, *, config: Any = ...) -> GateStatus:
    """The gate's verdict on ``change_request`` now (reads only).

    ``config`` is the gate configuration to judge by; by default the one in the policy copied
    at submit (a draft has none: pass the policy in force to show what will happen). Queries:
    none without a gate; with one, the proposed run (1), the baseline's run (1, when there is a
    baseline release) and the comparison (2, when both runs exist), whatever the number of
    cases."""
    cr = change_request
    raw = _config_of(cr) if config is ... else config
    if not raw:
        return GateStatus(required=False, passed=True, pending=False, state=NOT_REQUIRED)
    config = _with_defaults(raw)
    status = GateStatus(
        required=True, passed=False, pending=False, state=NOT_STARTED, config=config
    )
    proposed = (
        EvalRun.objects.filter(
            change_request=cr,
            cr_role=CrRole.PROPOSED,
            release_id=cr.proposed_id,
            suite_version__suite_id=config["suite"],
        )
        .select_related("suite_version", "suite_version__suite", "release", "release__product")
        .order_by("-created_at")
        .first()
    )
    if proposed is None:
        status.suite = EvalSuite.objects.filter(pk=config["suite"]).first()
        if cr.state in ("draft", "withdrawn"):
            status.reasons.append("its runs start when the change is submitted")
        else:
            status.reasons.append(
                "no run was started for the proposed release; withdraw and submit the change "
                "again to start them"
            )
        _pending_checks(status, cr)
        return status
    status.proposed_run = proposed
    status.suite_version = proposed.suite_version
    status.suite = proposed.suite_version.suite
    if cr.baseline_id:
        status.baseline_run = _baseline_candidate(
            release=cr.baseline_id, suite_version=proposed.suite_version_id
        )
    if status.baseline_run is not None:
        status.comparison = compare_runs(status.baseline_run, proposed)
    _judge(status, cr)
    return status


def _pending_checks(status: GateStatus, cr) -> None:
    config = status.config
    status.checks.append(Check("pass_rate", f"Pass rate ≥ {config['min_pass_rate']:.2f}", PENDING))
    if config["no_regressions"]:
        status.checks.append(
            Check(
                "no_regressions",
                "No regressions against the baseline",
                PENDING if cr.baseline_id else SKIPPED,
                "" if cr.baseline_id else "no baseline release",
            )
        )
    if config["max_cost_increase"] is not None:
        status.checks.append(
            Check(
                "cost",
                f"Cost at most {_pct(config['max_cost_increase'])} over the baseline",
                PENDING if cr.baseline_id else SKIPPED,
                "" if cr.baseline_id else "no baseline release",
            )
        )


def _judge(status: GateStatus, cr) -> None:
    proposed, baseline = status.proposed_run, status.baseline_run
    needs_baseline = bool(cr.baseline_id)
    problems = [_run_problem(proposed, "proposed", cr.proposed.version)]
    if needs_baseline:
        problems.append(_run_problem(baseline, "baseline", cr.baseline.version))
    problems = [
        p
        for p, run in zip(problems, (proposed, baseline), strict=False)
        if p and (run is None or run.is_finished)
    ]
    live = [r for r in status.runs if r.state in LIVE_STATES]
    _checks(status, cr)
    if problems:
        status.state, status.reasons = FAILED, [*problems, *status.reasons]
        status.checks.insert(0, Check("runs", "Runs succeeded", FAILED, "; ".join(problems)))
    elif live:
        status.state, status.pending = PENDING, True
        progress = ", ".join(
            _progress(r, "baseline" if r is baseline else "proposed") for r in status.runs
        )
        status.reasons = [f"the runs are still going ({progress})"]
        status.checks.insert(0, Check("runs", "Runs succeeded", PENDING, progress))
    elif status.reasons:
        status.state = FAILED
        status.checks.insert(0, Check("runs", "Runs succeeded", PASSED))
    else:
        status.state, status.passed = PASSED, True
        status.checks.insert(0, Check("runs", "Runs succeeded", PASSED))
    status.figures["proposed_cost"] = status.figures.get("proposed_cost", str(proposed.cost))
    if baseline is not None:
        status.figures.setdefault("baseline_cost", str(baseline.cost))


# --- the registry's adapters (``apps.changes.gates``) ----------------------------------------


def gate_verdict(*, cr, config) -> "GateVerdict":
    """The gate's verdict in the registry's terms; ``detail`` is the ``GateStatus``."""
    from apps.changes.gates import GateVerdict

    status = gate_status(cr, config=config)
    return GateVerdict(
        name=GATE_NAME,
        label=GATE_LABEL,
        state=status.state,
        reasons=list(status.reasons),
        evidence=status.evidence() if status.required else {},
        detail=status,
    )


def gate_start(*, cr, actor, config) -> None:
    gate_start_runs(cr, actor, config)


def gate_evidence_links(evidence: dict) -> list[dict]:
    """Links to what a signature relied on: the two runs and their comparison."""
    from django.urls import reverse

    baseline, proposed = evidence.get("baseline_run"), evidence.get("proposed_run")
    links = []
    if baseline:
        links.append({"label": "baseline run", "url": reverse("eval_run_detail", args=[baseline])})
    if proposed:
        links.append({"label": "proposed run", "url": reverse("eval_run_detail", args=[proposed])})
    if baseline and proposed:
        url = f"{reverse('eval_compare')}?a={baseline}&b={proposed}"
        links.append({"label": "comparison", "url": url})
    return links


__all__ = [
    "GATE_NAME",
    "Check",
    "GateStatus",
    "gate_config_clean",
    "gate_start_runs",
    "gate_status",
]

"""Change requests under an evaluation gate, and runs finished by hand (no worker).

``gated_cr(pm)`` is a submitted change request of a product with a released baseline whose
policy (in the product's stage) gates on a suite of the team: the submit started the runs (they
stay queued: nothing runs in these tests). ``finish(run, {"a": "fail"})`` writes the run's
results straight into the database — every case passes unless named — and marks it finished,
as the worker would.
"""

from decimal import Decimal

from apps.accounts.roles import ADMIN
from apps.changes import services as changes
from apps.changes.models import ChangeRequest
from apps.evaluations.models import CrRole, EvalResult, EvalRun, EvalSuiteVersion, RunState
from apps.evaluations.runs import HARNESS_VERSION
from tests.changes.helpers import PASSWORD, proposal, released, team_reviewer
from tests.evaluations.factories import case_dict, suite_with_cases
from tests.factories import member

CASES = ("alpha", "beta", "gamma")


def team_of(user):
    return user.memberships.first().team


def gate_policy(pm, product, suite_version: EvalSuiteVersion, **gate):
    """Set the product's policy (in its stage): one reviewer, and the evaluation gate."""
    admin = member(ADMIN, team_of(pm))
    return changes.approval_policy_set(
        actor=admin,
        product=product,
        stage=product.stage,
        required_roles=[{"role": "reviewer", "quorum": 1}],
        evaluation_gate={"suite": str(suite_version.suite_id), **gate},
    )


def gated_cr(
    pm,
    *,
    cases=CASES,
    baseline=True,
    submit=True,
    suite_version: EvalSuiteVersion | None = None,
    **gate,
) -> tuple[ChangeRequest, EvalSuiteVersion]:
    """A change request (submitted unless ``submit=False``) under an evaluation gate."""
    if baseline:
        base = released(pm)
        prod, proposed = base.product, proposal(pm, base)
    else:
        from tests.factories import release

        proposed = release(pm, prompt_text="First prompt.")
        prod = proposed.product
    sv = suite_version or suite_with_cases(pm, cases=[case_dict(key) for key in cases])
    gate_policy(pm, prod, sv, **gate)
    cr = changes.change_request_create(
        actor=pm, product=prod, title="Gated change", rationale="Because.", proposed=proposed
    )
    if submit:
        cr = changes.change_request_submit(actor=pm, cr=cr)
    return cr, sv


def runs_of(cr) -> tuple[EvalRun | None, EvalRun]:
    """The change's baseline run (None without one) and its latest proposed run."""
    runs = EvalRun.objects.filter(change_request=cr).order_by("-created_at")
    baseline = runs.filter(cr_role=CrRole.BASELINE).first()
    return baseline, runs.filter(cr_role=CrRole.PROPOSED).first()


def make_run(actor, suite_version, release, *, change_request=None, cr_role="") -> EvalRun:
    """A queued run created straight in the database (no audit, nothing enqueued)."""
    return EvalRun.objects.create(
        suite_version=suite_version,
        release=release,
        prompt_version=release.prompt_version,
        model_version=release.model_version,
        change_request=change_request,
        cr_role=cr_role,
        team=release.product.owner_team,
        total=suite_version.cases.count(),
        release_fingerprint=release.fingerprint,
        harness_version=HARNESS_VERSION,
        created_by=actor,
    )


def finish(
    run: EvalRun,
    outcomes: dict[str, str] | None = None,
    *,
    state: str = RunState.SUCCEEDED,
    cost: str = "0.001",
    latency_ms: int = 100,
    tokens: tuple[int, int] = (10, 5),
    partial: int | None = None,
    error: str = "",
) -> EvalRun:
    """Write ``run``'s results (``outcomes`` by case key, "pass" when not named; each costing
    ``cost``) and move it to ``state``; ``partial=n`` writes the first n results only and keeps
    it running."""
    outcomes = outcomes or {}
    cases = list(run.suite_version.cases.order_by("position"))
    if partial is not None:
        cases, state = cases[:partial], RunState.RUNNING
    rows = []
    for case in cases:
        outcome = outcomes.get(case.key, "pass")
        text = f"[builtin] say {case.key}" if outcome == "pass" else "[builtin] something else"
        rows.append(
            EvalResult(
                run=run,
                case=case,
                outcome=outcome,
                output="" if outcome == "error" else text,
                error="upstream failed" if outcome == "error" else "",
                checks=[]
                if outcome == "error"
                else [{"type": "contains", "passed": outcome == "pass", "detail": case.key}],
                latency_ms=latency_ms,
                tokens_in=tokens[0],
                tokens_out=tokens[1],
                cost=Decimal(cost),
            )
        )
    EvalResult.objects.bulk_create(rows)
    passed = sum(1 for r in rows if r.outcome == "pass")
    errored = sum(1 for r in rows if r.outcome == "error")
    finished = state != RunState.RUNNING
    EvalRun.objects.filter(pk=run.pk).update(
        state=state,
        completed=len(rows),
        passed=passed,
        errored=errored,
        pass_rate=passed / run.total if run.total and finished else None,
        cost=sum((r.cost for r in rows), Decimal(0)),
        error=error,
    )
    run.refresh_from_db()
    return run


__all__ = [
    "CASES",
    "PASSWORD",
    "finish",
    "gate_policy",
    "gated_cr",
    "make_run",
    "runs_of",
    "team_of",
    "team_reviewer",
]

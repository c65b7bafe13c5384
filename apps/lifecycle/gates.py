"""Stage gates: the entry criteria of each lifecycle stage, checked by the server.

A ``GateDefinition`` row (per risk class and target stage) names criteria by code and the roles
whose signature moves a product there; without a row the defaults below apply. Each criterion is
a function of the product (and of what the request carries: a sunset date, a migration note)
returning whether it is met and a line a person can act on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from django.utils import timezone

from apps.accounts.models import Membership
from apps.accounts.roles import ADMIN, PRODUCT_MANAGER, REVIEWER
from apps.catalog.models import Product, RiskClass, Stage
from apps.changes.models import ChangeRequest, CRState
from apps.evaluations.models import EvalRun, RunState
from apps.releases.models import Release, ReleaseStatus

from .models import GateDefinition, LifecycleRequest, RequestKind, RequestState


@dataclass(frozen=True)
class Check:
    code: str
    label: str
    met: bool
    detail: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RequestFacts:
    """What a stage request carries besides the target stage."""

    sunset_at: Any = None
    migration_note: str = ""


@dataclass(frozen=True)
class Criterion:
    code: str
    label: str
    check: Callable[[Product, RequestFacts], tuple[bool, str]]


def _brief(product: Product, facts: RequestFacts) -> tuple[bool, str]:
    from .selectors import brief_in_force

    brief = brief_in_force(product=product)
    if brief is None:
        return False, "Write the product brief."
    missing = [
        name
        for name, ok in (
            ("problem statement", bool(brief.problem_statement.strip())),
            ("a user story", bool(brief.user_stories)),
            ("a target metric", bool(brief.target_metrics)),
        )
        if not ok
    ]
    if missing:
        return False, f"Brief v{brief.version} lacks {', '.join(missing)}."
    return True, f"Brief v{brief.version} is in force."


def _assessment(product: Product, facts: RequestFacts) -> tuple[bool, str]:
    from .models import Assessment

    a = Assessment.objects.filter(product=product).first()
    if a is None:
        return False, "Write the feasibility and impact assessment."
    missing = [
        name
        for name, ok in (
            ("technical feasibility", bool(a.technical.strip())),
            ("ethical feasibility", bool(a.ethical.strip())),
            ("a risk", bool(a.risks)),
            ("the expected volume", a.calls_per_month > 0),
        )
        if not ok
    ]
    if missing:
        return False, f"The assessment lacks {', '.join(missing)}."
    return True, f"Assessed: {len(a.risks)} risk(s), {a.calls_per_month:,} calls a month."


def _team_reviewer(product: Product, facts: RequestFacts) -> tuple[bool, str]:
    reviewers = list(
        Membership.objects.filter(
            team_id=product.owner_team_id, role=REVIEWER, user__is_active=True
        ).values_list("user__username", flat=True)
    )
    if not reviewers:
        return False, f"Team {product.owner_team.slug} has no reviewer: add one."
    return True, f"Reviewers in {product.owner_team.slug}: {', '.join(sorted(reviewers))}."


def _candidate_release(product: Product, facts: RequestFacts) -> tuple[bool, str]:
    release = (
        Release.objects.filter(
            product=product, status__in=(ReleaseStatus.CANDIDATE, ReleaseStatus.RELEASED)
        )
        .order_by("-created_at")
        .first()
    )
    if release is None:
        return False, "Freeze a release as a candidate."
    return True, f"Release {release.version} is {release.status}."


def _suites(product: Product) -> list[str]:
    from .selectors import brief_in_force

    brief = brief_in_force(product=product)
    if brief is None:
        return []
    return sorted({t["suite"] for t in brief.target_metrics if t.get("suite")})


def _target_suites_run(product: Product, facts: RequestFacts) -> tuple[bool, str]:
    suites = _suites(product)
    if not suites:
        return False, "Name the evaluation suites in the brief's target metrics."
    done = set(
        EvalRun.objects.filter(
            release__product=product,
            release__status__in=(ReleaseStatus.CANDIDATE, ReleaseStatus.RELEASED),
            state=RunState.SUCCEEDED,
            suite_version__suite__owner_team_id=product.owner_team_id,
            suite_version__suite__slug__in=suites,
        ).values_list("suite_version__suite__slug", flat=True)
    )
    missing = [s for s in suites if s not in done]
    if missing:
        return False, f"Run suite(s) {', '.join(missing)} against a candidate release."
    return True, f"Evaluated with {', '.join(suites)}."


def _governed_change(product: Product, facts: RequestFacts) -> tuple[bool, str]:
    for cr in ChangeRequest.objects.filter(product=product, state=CRState.IMPLEMENTED).order_by(
        "-implemented_at"
    ):
        required = (cr.policy_snapshot or {}).get("required_roles") or []
        if required:
            roles = ", ".join(f"{r['role']}x{r.get('quorum', 1)}" for r in required)
            return True, f'Change "{cr.title}" implemented under a policy requiring {roles}.'
    return False, "Implement a change request under a policy with required approvers."


def _targets_met(product: Product, facts: RequestFacts) -> tuple[bool, str]:
    from .metrics import measure

    release = Release.objects.filter(product=product, status=ReleaseStatus.RELEASED).first()
    if release is None:
        return False, "No released release yet: the targets are measured on it."
    measured = measure(product=product, release=release)
    if not measured:
        return False, "The brief names no target metric."
    unmet = [m.label for m in measured if m.met is not True]
    if unmet:
        return False, f"Not met (or not measured yet): {'; '.join(unmet)}."
    return True, f"All {len(measured)} target metric(s) met on release {release.version}."


def _sunset_date(product: Product, facts: RequestFacts) -> tuple[bool, str]:
    if facts.sunset_at is None:
        return False, "Give a sunset date."
    if facts.sunset_at <= timezone.now():
        return False, "The sunset date must be in the future."
    return True, f"Sunset on {facts.sunset_at:%Y-%m-%d %H:%M} UTC."


def _migration_note(product: Product, facts: RequestFacts) -> tuple[bool, str]:
    if not (facts.migration_note or "").strip():
        return False, "Write a migration note for the subscribers."
    return True, "Migration note written."


def planned_sunset(product: Product) -> LifecycleRequest | None:
    """The approved deprecation in force: the latest approved move to deprecated."""
    return (
        LifecycleRequest.objects.filter(
            product=product,
            kind=RequestKind.STAGE,
            to_stage=Stage.DEPRECATED,
            state=RequestState.APPROVED,
        )
        .order_by("-decided_at")
        .first()
    )


def _sunset_passed(product: Product, facts: RequestFacts) -> tuple[bool, str]:
    """A product that reached subscribers retires after its sunset date; one that never did
    (an idea dropped in concept, say) has nothing to sunset."""
    from apps.portal.models import APIStatus, PublishedAPI

    plan = planned_sunset(product)
    if plan is None or plan.sunset_at is None:
        live = PublishedAPI.objects.filter(
            product=product, status__in=(APIStatus.PUBLISHED, APIStatus.DEPRECATED)
        ).exists()
        if not live and product.stage != Stage.PRODUCTION:
            return True, "No API serves it: nothing to sunset."
        return False, "Deprecate it first, with a sunset date for its subscribers."
    if plan.sunset_at > timezone.now():
        return False, f"The sunset date ({plan.sunset_at:%Y-%m-%d %H:%M} UTC) has not passed."
    return True, f"The sunset date ({plan.sunset_at:%Y-%m-%d %H:%M} UTC) has passed."


CRITERIA: dict[str, Criterion] = {
    c.code: c
    for c in (
        Criterion("brief", "Product brief in force", _brief),
        Criterion("assessment", "Feasibility and impact assessment", _assessment),
        Criterion("team_reviewer", "Owner team has a reviewer", _team_reviewer),
        Criterion("candidate_release", "A candidate release", _candidate_release),
        Criterion(
            "target_suites_run", "Every suite of the target metrics has run", _target_suites_run
        ),
        Criterion(
            "governed_change",
            "A change request implemented under a policy with required approvers",
            _governed_change,
        ),
        Criterion("targets_met", "Target metrics met by the released release", _targets_met),
        Criterion("sunset_date", "A sunset date", _sunset_date),
        Criterion("migration_note", "A migration note", _migration_note),
        Criterion("sunset_passed", "The sunset date has passed", _sunset_passed),
    )
}

# Sensible defaults: what each stage needs to be entered, for every risk class; high-risk
# products also need the assessment again before validation and an admin's signature for
# production. Moves back (a failed review) need only a signature.
DEFAULT_CRITERIA: dict[str, list[str]] = {
    Stage.CONCEPT: [],
    Stage.DESIGN: ["brief", "assessment"],
    Stage.DEVELOPMENT: ["team_reviewer"],
    Stage.VALIDATION: ["candidate_release", "target_suites_run"],
    Stage.PRODUCTION: ["governed_change", "targets_met"],
    Stage.DEPRECATED: ["sunset_date", "migration_note"],
    Stage.RETIRED: ["sunset_passed"],
}
DEFAULT_SIGNERS = [REVIEWER, ADMIN]
SIGNER_ROLES = (REVIEWER, ADMIN, PRODUCT_MANAGER)


def default_gate(risk_class: str, stage: str) -> dict:
    criteria = list(DEFAULT_CRITERIA[stage])
    signers = list(DEFAULT_SIGNERS)
    if risk_class == RiskClass.HIGH:
        if stage == Stage.VALIDATION:
            criteria = ["assessment", *criteria]
        if stage == Stage.PRODUCTION:
            signers = [ADMIN]
    return {"criteria": criteria, "signer_roles": signers}


def gate_for(product: Product, stage: str) -> dict:
    row = GateDefinition.objects.filter(risk_class=product.risk_class, stage=stage).first()
    if row is None:
        return default_gate(product.risk_class, stage)
    return {"criteria": list(row.criteria), "signer_roles": list(row.signer_roles)}


def is_backward(product: Product, to_stage: str) -> bool:
    order = list(Stage.values)
    return (
        to_stage in order
        and product.stage in order
        and order.index(to_stage) < order.index(product.stage)
        and to_stage != Stage.RETIRED
    )


def checklist(product: Product, to_stage: str, facts: RequestFacts | None = None) -> list[Check]:
    """The entry criteria of ``to_stage`` for ``product``, each checked now. A move back to an
    earlier stage (a failed review) has no criteria."""
    facts = facts or RequestFacts()
    if is_backward(product, to_stage):
        return []
    out = []
    for code in gate_for(product, to_stage)["criteria"]:
        criterion = CRITERIA[code]
        met, detail = criterion.check(product, facts)
        out.append(Check(code, criterion.label, met, detail))
    return out


def clean_gate(criteria: Any, signer_roles: Any) -> tuple[list[str], list[str]]:
    from apps.core.exceptions import ApplicationError

    if not isinstance(criteria, list) or not all(isinstance(c, str) for c in criteria):
        raise ApplicationError(
            "invalid", "criteria: a list of criterion codes.", {"criteria": ["Not a list."]}
        )
    unknown = sorted(set(criteria) - set(CRITERIA))
    if unknown:
        raise ApplicationError(
            "invalid",
            f"criteria: unknown {', '.join(unknown)}; known: {', '.join(CRITERIA)}.",
            {"criteria": ["Unknown criterion."]},
        )
    if not isinstance(signer_roles, list) or not signer_roles:
        raise ApplicationError(
            "invalid",
            "signer_roles: a non-empty list of roles.",
            {"signer_roles": ["Name at least one role."]},
        )
    bad = sorted(set(signer_roles) - set(SIGNER_ROLES))
    if bad:
        raise ApplicationError(
            "invalid",
            f"signer_roles: {', '.join(bad)} cannot sign; one of {', '.join(SIGNER_ROLES)}.",
            {"signer_roles": ["Unknown role."]},
        )
    return list(dict.fromkeys(criteria)), list(dict.fromkeys(signer_roles))

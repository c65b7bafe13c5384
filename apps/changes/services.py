"""Every write to change requests, approval policies and approvals.

Transitions happen in one place (``_move``), each under a row lock, checked against
CR_TRANSITIONS, and audited. Approve and reject are signatures: the reviewer's password in the
same request, the role signed as, and the request's fingerprint at that moment. The gates
(``gates``: the evaluation gate) start on submit, hold back approve and implement until they
pass, and each signature stores the evidence it relied on.
"""

from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from apps.accounts.models import Membership, User
from apps.accounts.roles import ROLES
from apps.accounts.services import signature_check
from apps.audit.services import audit_changes, audit_record
from apps.catalog.models import Product, Stage
from apps.catalog.services import require_writable
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.core.hashing import content_hash
from apps.core.history import as_actor
from apps.core.models import UNSET as _UNSET
from apps.releases.diff import change_kind, release_diff
from apps.releases.models import Release, ReleaseStatus
from apps.releases.services import release_freeze, release_release

from . import gates
from .models import (
    CR_TRANSITIONS,
    OPEN_STATES,
    REVIEW_STATES,
    Approval,
    ApprovalPolicy,
    ChangeRequest,
    CRState,
    Decision,
    Risk,
)
from .signals import change_implemented

DEFAULT_POLICY: dict[str, Any] = {
    "stage": None,
    "required_roles": [{"role": "reviewer", "quorum": 1}],
    "optional_reviewers": [],
    "comment_only": [],
    "veto": True,
    "evaluation_gate": None,
}
GOVERNED_STAGES = (Stage.VALIDATION, Stage.PRODUCTION)


# --- Policies -------------------------------------------------------------------------------


def _clean_required(required: Any) -> list[dict]:
    if required in (None, ""):
        return []
    if not isinstance(required, list):
        raise ApplicationError(
            "invalid",
            "required_roles must be a list of {role, quorum}.",
            {"required_roles": ["Not a list."]},
        )
    out, seen = [], set()
    for i, rule in enumerate(required):
        where = f"required_roles[{i}]"
        if not isinstance(rule, dict) or rule.get("role") not in ROLES:
            raise ApplicationError(
                "invalid",
                f"{where}.role must be one of {', '.join(ROLES)}.",
                {where: ["Unknown role."]},
            )
        quorum = rule.get("quorum", 1)
        if isinstance(quorum, bool) or not isinstance(quorum, int) or not 1 <= quorum <= 20:
            raise ApplicationError(
                "invalid",
                f"{where}.quorum must be a whole number from 1 to 20.",
                {where: ["Bad quorum."]},
            )
        if rule["role"] in seen:
            raise ApplicationError(
                "invalid", f"{where} repeats role {rule['role']}.", {where: ["Repeated."]}
            )
        seen.add(rule["role"])
        out.append({"role": rule["role"], "quorum": quorum})
    return out


def _clean_usernames(value: Any, name: str) -> list[str]:
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApplicationError(
            "invalid", f"{name} must be a list of usernames.", {name: ["Not a list."]}
        )
    known = set(User.objects.filter(username__in=value).values_list("username", flat=True))
    unknown = sorted(set(value) - known)
    if unknown:
        raise ApplicationError(
            "invalid", f"{name}: unknown users {', '.join(unknown)}.", {name: ["Unknown user."]}
        )
    return sorted(set(value))


def _clean_gate(product: Product, gate: Any) -> dict | None:
    """The evaluation gate, cleaned by the app that judges it (see ``gates``); without one, only
    its shape is checked."""
    judge = gates.gate_for_policy_key("evaluation_gate")
    if judge is not None and judge.clean is not None:
        return judge.clean(product=product, value=gate)
    if gate in (None, "", {}):
        return None
    if not isinstance(gate, dict) or "suite" not in gate:
        raise ApplicationError(
            "invalid",
            "evaluation_gate must be {suite, min_pass_rate, no_regressions, max_cost_increase}.",
            {"evaluation_gate": ["Bad gate."]},
        )
    rate = gate.get("min_pass_rate", 1.0)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        raise ApplicationError(
            "invalid",
            "evaluation_gate.min_pass_rate must be between 0 and 1.",
            {"evaluation_gate": ["Bad pass rate."]},
        )
    return {"suite": str(gate["suite"]), "min_pass_rate": rate}


def approval_policy_set(
    *,
    actor: User,
    product: Product,
    stage: str,
    required_roles: Any = None,
    optional_reviewers: Any = None,
    comment_only: Any = None,
    veto: bool = True,
    evaluation_gate: Any = None,
) -> ApprovalPolicy:
    """Create or replace the policy of ``product`` in ``stage`` (team admins only)."""
    if stage not in Stage.values:
        raise ApplicationError("invalid", f"Unknown stage {stage!r}.", {"stage": ["Unknown."]})
    if not (actor.is_superuser or actor.has_role("admin", team=product.owner_team)):
        raise Forbidden("forbidden", "Only an admin of the product's team can set its policies.")
    require_writable(product)
    required = _clean_required(required_roles)
    if stage in GOVERNED_STAGES and not required:
        raise ApplicationError(
            "invalid",
            f"A policy for {stage} needs at least one required approver role.",
            {"required_roles": ["Required in validation and production."]},
        )
    values = {
        "required_roles": required,
        "optional_reviewers": _clean_usernames(optional_reviewers, "optional_reviewers"),
        "comment_only": _clean_usernames(comment_only, "comment_only"),
        "veto": bool(veto),
        "evaluation_gate": _clean_gate(product, evaluation_gate),
    }
    with transaction.atomic():
        policy = (
            ApprovalPolicy.objects.select_for_update().filter(product=product, stage=stage).first()
        )
        before = policy.snapshot() if policy else None
        if policy is None:
            policy = ApprovalPolicy(product=product, stage=stage)
        for key, value in values.items():
            setattr(policy, key, value)
        as_actor(policy, actor).save()
        audit_record(
            actor=actor,
            verb="approval_policy.set",
            obj=policy,
            product_id=product.pk,
            before=before,
            after=policy.snapshot(),
        )
    return policy


def _policy(cr: ChangeRequest) -> dict:
    """The policy a change request is judged by: the copy taken at submit, else today's."""
    return cr.policy_snapshot or policy_in_force(cr.product)


def policy_in_force(product: Product) -> dict:
    """The product's policy for its current stage (from prefetched ``policies`` when loaded),
    else the default policy."""
    if "policies" in getattr(product, "_prefetched_objects_cache", {}):
        policy = next((p for p in product.policies.all() if p.stage == product.stage), None)
    else:
        policy = ApprovalPolicy.objects.filter(product=product, stage=product.stage).first()
    if policy is not None:
        return policy.snapshot()
    return {**DEFAULT_POLICY, "stage": product.stage}


# --- Fingerprint, conflicts, quorum ---------------------------------------------------------


def change_request_fingerprint(cr: ChangeRequest) -> str:
    return content_hash(
        {
            "product": str(cr.product_id),
            "title": cr.title,
            "rationale": cr.rationale,
            "risk": cr.risk,
            "baseline": [str(cr.baseline_id), cr.baseline.fingerprint] if cr.baseline_id else None,
            "proposed": [str(cr.proposed_id), cr.proposed.fingerprint],
        }
    )


def conflicted_users(cr: ChangeRequest) -> set[Any]:
    """Who may not approve: the requester, whoever created or edited the proposed release, and
    whoever created the artifact versions it introduces. No bypass, admins included."""
    ids = {cr.requested_by_id}
    proposed = cr.proposed
    ids.add(proposed.created_by_id)
    ids |= set(proposed.history.values_list("history_user_id", flat=True))
    base = cr.baseline
    introduced = []
    if base is None or base.prompt_version_id != proposed.prompt_version_id:
        introduced.append(proposed.prompt_version)
    if base is None or base.model_version_id != proposed.model_version_id:
        introduced.append(proposed.model_version)
    base_ds = (
        set(base.dataset_links.values_list("dataset_version_id", flat=True)) if base else set()
    )
    introduced += [
        link.dataset_version
        for link in proposed.dataset_links.select_related("dataset_version")
        if link.dataset_version_id not in base_ds
    ]
    for version in introduced:
        ids.add(version.created_by_id)
    ids.discard(None)
    return ids


@dataclass
class Quorum:
    met: bool
    vetoed_by: list[str] = field(default_factory=list)
    roles: list[dict] = field(default_factory=list)


def quorum_status(cr: ChangeRequest, approvals: list[Approval] | None = None) -> Quorum:
    """Count the valid (current-fingerprint) signatures against the copied policy."""
    policy = _policy(cr)
    if approvals is None:
        approvals = list(cr.approvals.all())
    valid = [a for a in approvals if a.fingerprint == cr.fingerprint and a.required]
    roles = []
    for rule in policy["required_roles"]:
        approvers = sorted(
            {
                a.reviewer_username
                for a in valid
                if a.role == rule["role"] and a.decision == Decision.APPROVE
            }
        )
        roles.append({**rule, "have": len(approvers), "approvers": approvers})
    vetoed = sorted({a.reviewer_username for a in valid if a.decision == Decision.REJECT})
    met = bool(roles) and all(r["have"] >= r["quorum"] for r in roles)
    return Quorum(met=met and not (policy["veto"] and vetoed), vetoed_by=vetoed, roles=roles)


# --- Transitions ----------------------------------------------------------------------------


def _move(*, actor: User, cr: ChangeRequest, to: str, verb: str, extra: dict | None = None):
    """The one place a change request's state changes; the caller holds the row lock."""
    current = cr.state
    if to not in CR_TRANSITIONS[current]:
        raise Conflict(
            "invalid_transition",
            f"This change request is {current.replace('_', ' ')}; it cannot become "
            f"{to.replace('_', ' ')}.",
        )
    cr.state = to
    as_actor(cr, actor).save()
    audit_record(
        actor=actor,
        verb=verb,
        obj=cr,
        product_id=cr.product_id,
        before={"state": current},
        after={"state": to, **(extra or {})},
    )
    return cr


def _lock(cr: ChangeRequest) -> ChangeRequest:
    return (
        ChangeRequest.objects.select_for_update(of=("self",))
        .select_related("product", "product__owner_team", "baseline", "proposed", "requested_by")
        .get(pk=cr.pk)
    )


def _require_change(actor: User, product: Product) -> None:
    if not actor.has_perm("catalog.change_product", product):
        raise Forbidden(
            "forbidden", f"Only the product team's product managers can change {product.slug}."
        )
    require_writable(product)


def _notify(subject: str, body: str, users: list[User]) -> None:
    recipients = sorted({u.email for u in users if u and u.email})
    if not recipients:
        return
    transaction.on_commit(
        lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients),
        robust=True,
    )


def _snapshot(cr: ChangeRequest) -> dict:
    return {
        "title": cr.title,
        "rationale": cr.rationale,
        "risk": cr.risk,
        "kind": cr.kind,
        "baseline": str(cr.baseline_id) if cr.baseline_id else None,
        "proposed": str(cr.proposed_id),
        "fingerprint": cr.fingerprint,
    }


def _check_releases(product: Product, baseline: Release | None, proposed: Release) -> None:
    if proposed.product_id != product.pk:
        raise ApplicationError(
            "invalid",
            "The proposed release belongs to another product.",
            {"proposed": ["Another product's release."]},
        )
    if proposed.status not in (ReleaseStatus.DRAFT, ReleaseStatus.CANDIDATE):
        raise ApplicationError(
            "invalid",
            f"Release {proposed} is {proposed.status}; propose a draft release.",
            {"proposed": ["Not a draft."]},
        )
    if baseline is not None and baseline.product_id != product.pk:
        raise ApplicationError(
            "invalid",
            "The baseline belongs to another product.",
            {"baseline": ["Another product's release."]},
        )
    if baseline is not None and baseline.pk == proposed.pk:
        raise ApplicationError(
            "invalid",
            "The baseline and the proposed release are the same.",
            {"proposed": ["Same as the baseline."]},
        )


def _refresh_content(cr: ChangeRequest) -> None:
    diff = release_diff(cr.baseline, cr.proposed)
    cr.kind = change_kind(cr.baseline, diff)
    cr.fingerprint = change_request_fingerprint(cr)


def change_request_create(
    *,
    actor: User,
    product: Product,
    title: str,
    rationale: str,
    proposed: Release,
    baseline: Release | None = None,
    risk: str = Risk.MEDIUM,
    impact: dict | None = None,
) -> ChangeRequest:
    """A draft change request; the baseline defaults to the product's released release."""
    with transaction.atomic():
        _require_change(actor, product)
        if baseline is None:
            baseline = Release.objects.filter(
                product=product, status=ReleaseStatus.RELEASED
            ).first()
        _check_releases(product, baseline, proposed)
        cr = ChangeRequest(
            product=product,
            title=(title or "").strip(),
            rationale=(rationale or "").strip(),
            risk=risk,
            impact=impact or {},
            baseline=baseline,
            proposed=proposed,
            requested_by=actor,
        )
        _refresh_content(cr)
        cr.full_clean(exclude=["fingerprint", "requested_by"])
        as_actor(cr, actor).save()
        audit_record(
            actor=actor,
            verb="change_request.created",
            obj=cr,
            product_id=product.pk,
            after=_snapshot(cr),
        )
    return cr


def change_request_update(
    *,
    actor: User,
    cr: ChangeRequest,
    title: Any = _UNSET,
    rationale: Any = _UNSET,
    risk: Any = _UNSET,
    impact: Any = _UNSET,
    baseline: Any = _UNSET,
    proposed: Any = _UNSET,
) -> ChangeRequest:
    """Edit a draft (a withdrawn request is reopened as a draft first). The fingerprint follows
    the content, so earlier approvals no longer match."""
    with transaction.atomic():
        cr = _lock(cr)
        _require_change(actor, cr.product)
        if cr.state == CRState.WITHDRAWN:
            _move(actor=actor, cr=cr, to=CRState.DRAFT, verb="change_request.reopened")
        if cr.state != CRState.DRAFT:
            raise Conflict(
                "not_editable",
                f"This change request is {cr.state.replace('_', ' ')}; withdraw it to edit it.",
            )
        before = _snapshot(cr)
        for name, value in (
            ("title", title),
            ("rationale", rationale),
            ("risk", risk),
            ("impact", impact),
        ):
            if value is not _UNSET:
                setattr(cr, name, value.strip() if isinstance(value, str) else value)
        if baseline is not _UNSET:
            cr.baseline = baseline
        if proposed is not _UNSET:
            cr.proposed = proposed
        _check_releases(cr.product, cr.baseline, cr.proposed)
        _refresh_content(cr)
        cr.full_clean(exclude=["fingerprint", "requested_by"])
        as_actor(cr, actor).save()
        after = _snapshot(cr)
        audit_changes(
            actor=actor,
            verb="change_request.updated",
            obj=cr,
            product_id=cr.product_id,
            before=before,
            after=after,
        )
    return cr


def _eligible_reviewers(cr: ChangeRequest) -> list[User]:
    policy = _policy(cr)
    roles = [rule["role"] for rule in policy["required_roles"]]
    members = Membership.objects.filter(team_id=cr.product.owner_team_id, role__in=roles)
    users = {m.user for m in members.select_related("user")}
    users |= set(User.objects.filter(username__in=policy["optional_reviewers"]))
    excluded = set(cr.conflicted_user_ids)
    return sorted(
        (u for u in users if str(u.pk) not in excluded and u.pk not in excluded),
        key=lambda u: u.username,
    )


def change_request_submit(*, actor: User, cr: ChangeRequest) -> ChangeRequest:
    """Send a draft for review: the policy in force is copied and the proposed release frozen."""
    with transaction.atomic():
        cr = _lock(cr)
        _require_change(actor, cr.product)
        if cr.state == CRState.WITHDRAWN:
            _move(actor=actor, cr=cr, to=CRState.DRAFT, verb="change_request.reopened")
        if cr.state != CRState.DRAFT:
            raise Conflict(
                "invalid_transition",
                f"This change request is {cr.state.replace('_', ' ')}, not a draft.",
            )
        if not cr.title or not cr.rationale:
            raise ApplicationError(
                "invalid",
                "A change request needs a title and a rationale before review.",
                {k: ["Required."] for k in ("title", "rationale") if not getattr(cr, k)},
            )
        current = Release.objects.filter(
            product_id=cr.product_id, status=ReleaseStatus.RELEASED
        ).first()
        if (current.pk if current else None) != cr.baseline_id:
            raise Conflict(
                "stale",
                "The baseline is no longer the product's released release"
                + (f" (now {current.version})" if current else "")
                + ": re-base the change request before submitting it.",
            )
        other = ChangeRequest.objects.filter(
            proposed_id=cr.proposed_id, state__in=OPEN_STATES
        ).exclude(pk=cr.pk)
        if other.exists():
            raise Conflict(
                "already_proposed", "Another open change request already proposes this release."
            )
        release_freeze(actor=actor, release=cr.proposed)
        cr.proposed.refresh_from_db()
        _refresh_content(cr)
        cr.policy_snapshot = policy_in_force(cr.product)
        cr.conflicted_user_ids = sorted(str(i) for i in conflicted_users(cr))
        cr.submitted_at = timezone.now()
        cr.decided_at = None
        _move(
            actor=actor,
            cr=cr,
            to=CRState.SUBMITTED,
            verb="change_request.submitted",
            extra={"fingerprint": cr.fingerprint, "policy": cr.policy_snapshot},
        )
        # The gates start their work (the evaluation runs) with the submit, or not at all.
        gates.gates_start(cr, actor, cr.policy_snapshot)
        reviewers = _eligible_reviewers(cr)
        _notify(
            f"[PLM] Review requested: {cr.title}",
            f"{actor.get_username()} asks for your review of a change to {cr.product.slug}: "
            f"{cr.title}\n\n{cr.rationale}\n\nOpen your review queue at /changes/queue/.",
            reviewers,
        )
    return cr


def _signature_role(actor: User, cr: ChangeRequest) -> tuple[str, bool]:
    """The role ``actor`` signs as, and whether it counts toward a required quorum."""
    policy = _policy(cr)
    team_roles = actor.roles(team=cr.product.owner_team)
    for rule in policy["required_roles"]:
        if rule["role"] in team_roles:
            return rule["role"], True
    if actor.get_username() in policy["optional_reviewers"]:
        return "optional", False
    if actor.get_username() in policy["comment_only"]:
        raise Forbidden("comment_only", "You are a comment-only reviewer of this change.")
    raise Forbidden("not_a_reviewer", "You are not a reviewer of this change request.")


def _check_standing(actor: User, cr: ChangeRequest) -> None:
    """May ``actor`` sign at all? Checked before the password, so a requester is told why."""
    if actor.pk in conflicted_users(cr):
        raise Forbidden(
            "separation_of_duties",
            "You requested this change or authored part of it, so you cannot approve or reject it.",
        )
    _signature_role(actor, cr)


def _check_password(actor: User, password: str, cr: ChangeRequest) -> None:
    signature_check(
        actor=actor,
        password=password,
        obj=cr,
        product_id=cr.product_id,
        what="approvals and rejections are signed with it",
    )


def _record_approval(
    *,
    actor: User,
    cr: ChangeRequest,
    decision: str,
    role: str,
    required: bool,
    comment: str,
    verb: str,
    evidence: dict | None = None,
) -> Approval:
    """Store a decision or comment against the request's current fingerprint, audited; a
    signature also stores the evidence it relied on (the gates' verdicts)."""
    approval = as_actor(
        Approval(
            change_request=cr,
            reviewer=actor,
            reviewer_username=actor.get_username(),
            decision=decision,
            role=role,
            required=required,
            comment=comment,
            fingerprint=cr.fingerprint,
            evidence=evidence or {},
        ),
        actor,
    )
    approval.save()
    after = {"change_request": str(cr.pk), "comment": comment}
    if decision != Decision.COMMENT:
        after |= {
            "decision": decision,
            "role": role,
            "required": required,
            "fingerprint": cr.fingerprint,
        }
        if evidence:
            after["evidence"] = evidence
    audit_record(actor=actor, verb=verb, obj=approval, product_id=cr.product_id, after=after)
    return approval


def _decide(*, actor: User, cr: ChangeRequest, decision: str, password: str, comment: str):
    comment = (comment or "").strip()
    if decision == Decision.REJECT and not comment:
        raise ApplicationError(
            "invalid",
            "Say why you reject the change: a comment is required.",
            {"comment": ["Required when rejecting."]},
        )
    visible = ChangeRequest.objects.select_related("product").get(pk=cr.pk)
    if not actor.has_perm("catalog.view_product", visible.product):
        raise Forbidden("forbidden", "You cannot see this change request.")
    _check_standing(actor, visible)
    if decision == Decision.APPROVE and visible.state in REVIEW_STATES:  # before the password
        gates.gates_require(visible, _policy(visible), doing="approve")
    _check_password(actor, password, visible)
    with transaction.atomic():
        cr = _lock(cr)
        if cr.state not in REVIEW_STATES:
            raise Conflict(
                "invalid_transition",
                f"This change request is {cr.state.replace('_', ' ')}; it is not in review.",
            )
        _check_standing(actor, cr)  # again, under the lock
        role, required = _signature_role(actor, cr)
        if cr.approvals.filter(
            reviewer=actor,
            fingerprint=cr.fingerprint,
            decision__in=[Decision.APPROVE, Decision.REJECT],
        ).exists():
            raise Conflict("already_decided", "You already signed this version of the change.")
        policy = _policy(cr)
        if decision == Decision.APPROVE:
            verdicts = gates.gates_require(cr, policy, doing="approve")  # again, under the lock
        else:
            verdicts = gates.gate_verdicts(cr, policy)
        evidence = gates.evidence_of(verdicts)
        if cr.state == CRState.SUBMITTED:
            _move(actor=actor, cr=cr, to=CRState.IN_REVIEW, verb="change_request.in_review")
        approval = _record_approval(
            actor=actor,
            cr=cr,
            decision=decision,
            role=role,
            required=required,
            comment=comment,
            verb="approval.signed",
            evidence=evidence,
        )
        quorum = quorum_status(cr)
        if decision == Decision.REJECT and required and policy["veto"]:
            cr.decided_at = timezone.now()
            _move(
                actor=actor,
                cr=cr,
                to=CRState.REJECTED,
                verb="change_request.rejected",
                extra={"vetoed_by": actor.get_username()},
            )
            _notify(
                f"[PLM] Rejected: {cr.title}",
                f"{actor.get_username()} rejected your change request: {comment}",
                [cr.requested_by],
            )
        elif quorum.met:
            cr.decided_at = timezone.now()
            _move(
                actor=actor,
                cr=cr,
                to=CRState.APPROVED,
                verb="change_request.approved",
                extra={"quorum": quorum.roles, **({"gates": evidence} if evidence else {})},
            )
            _notify(
                f"[PLM] Approved: {cr.title}",
                f"Your change request to {cr.product.slug} is approved; it can be implemented.",
                [cr.requested_by],
            )
    return cr, approval


def change_request_approve(*, actor: User, cr: ChangeRequest, password: str, comment: str = ""):
    return _decide(
        actor=actor, cr=cr, decision=Decision.APPROVE, password=password, comment=comment
    )


def change_request_reject(*, actor: User, cr: ChangeRequest, password: str, comment: str):
    return _decide(actor=actor, cr=cr, decision=Decision.REJECT, password=password, comment=comment)


def change_request_withdraw(*, actor: User, cr: ChangeRequest, comment: str = "") -> ChangeRequest:
    with transaction.atomic():
        cr = _lock(cr)
        if actor.pk != cr.requested_by_id and not actor.has_perm(
            "catalog.change_product", cr.product
        ):
            raise Forbidden("forbidden", "Only the requester or the product team can withdraw.")
        return _move(
            actor=actor,
            cr=cr,
            to=CRState.WITHDRAWN,
            verb="change_request.withdrawn",
            extra={"comment": comment},
        )


def change_request_implement(*, actor: User, cr: ChangeRequest) -> ChangeRequest:
    """Release the proposed release, re-validating everything at this moment.

    Inside one transaction: lock the product (so two changes to it are serialized), lock the
    change request, check it is approved, that its approvals match the current fingerprint and
    meet the quorum, and that the baseline is still the released release; then release.
    """
    with transaction.atomic():
        product = Product.objects.select_for_update().get(pk=cr.product_id)
        cr = _lock(cr)
        _require_change(actor, product)
        if cr.state != CRState.APPROVED:
            raise Conflict(
                "invalid_transition",
                f"This change request is {cr.state.replace('_', ' ')}; only an approved change "
                "can be implemented.",
            )
        cr.proposed.refresh_from_db()
        if change_request_fingerprint(cr) != cr.fingerprint:
            raise Conflict(
                "content_changed",
                "The change's content changed since it was "
                "approved; the approvals are void. Withdraw and resubmit it.",
            )
        quorum = quorum_status(cr)
        if not quorum.met:
            raise Conflict("quorum_not_met", "The approvals no longer meet the policy's quorum.")
        evidence = gates.evidence_of(gates.gates_require(cr, _policy(cr), doing="implement"))
        current = Release.objects.filter(product=product, status=ReleaseStatus.RELEASED).first()
        if (current.pk if current else None) != cr.baseline_id:
            raise Conflict(
                "stale",
                "The baseline is no longer the product's released release"
                + (f" (now {current.version})" if current else "")
                + ": this change is stale and must be re-based (withdraw, edit, resubmit).",
            )
        release_release(actor=actor, release=cr.proposed)
        cr.implemented_at = timezone.now()
        cr.implemented_by = actor
        _move(
            actor=actor,
            cr=cr,
            to=CRState.IMPLEMENTED,
            verb="change_request.implemented",
            extra={"released": str(cr.proposed_id), **({"gates": evidence} if evidence else {})},
        )
        _notify(
            f"[PLM] Implemented: {cr.title}",
            f"{cr.proposed} is now the released release of {product.slug}.",
            [cr.requested_by],
        )
        transaction.on_commit(
            lambda: change_implemented.send(sender=ChangeRequest, change=cr),
            robust=True,
        )
    return cr


def change_request_comment(*, actor: User, cr: ChangeRequest, comment: str) -> Approval:
    """A review comment (not a signature: no password, counts toward nothing)."""
    comment = (comment or "").strip()
    if not comment:
        raise ApplicationError("invalid", "A comment cannot be empty.", {"comment": ["Required."]})
    with transaction.atomic():
        cr = _lock(cr)
        if not actor.has_perm("catalog.view_product", cr.product):
            raise Forbidden("forbidden", "You cannot see this change request.")
        if cr.state in (CRState.IMPLEMENTED, CRState.REJECTED):
            raise Conflict("closed", f"This change request is {cr.state}; it is closed.")
        policy = _policy(cr)
        reviewer_roles = {rule["role"] for rule in policy["required_roles"]}
        is_reviewer = bool(actor.roles(team=cr.product.owner_team) & reviewer_roles) or (
            actor.get_username() in policy["optional_reviewers"] + policy["comment_only"]
        )
        if not (is_reviewer or actor.has_perm("catalog.change_product", cr.product)):
            raise Forbidden(
                "forbidden", "Only the change's reviewers and the product team can comment."
            )
        if cr.state == CRState.SUBMITTED and is_reviewer and actor.pk not in conflicted_users(cr):
            _move(actor=actor, cr=cr, to=CRState.IN_REVIEW, verb="change_request.in_review")
        approval = _record_approval(
            actor=actor,
            cr=cr,
            decision=Decision.COMMENT,
            role="comment",
            required=False,
            comment=comment,
            verb="approval.commented",
        )
    return approval

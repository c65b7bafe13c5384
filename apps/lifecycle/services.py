"""Every write of the lifecycle app: briefs, assessments, gate definitions and the signed
requests that move a product through its stages.

A request (``LifecycleRequest``) is made by a product manager (or admin) of the product's team
when the entry criteria of the target stage are met; someone else, holding one of the gate's
signer roles in that team, signs it with their password and a comment. The criteria are checked
again at the signature, and the checklist is stored with it. Approving a stage request moves the
product (``catalog.product_transition``); a deprecation also deprecates the product's published
APIs with the sunset date and the migration note (their subscribers are mailed), and at the
sunset date ``product_sunset`` retires them, ends their subscriptions, purges payloads past the
retention and retires the product, which is then read-only.

Verbs: ``brief.created``, ``brief.in_force``, ``brief.rejected``, ``brief.withdrawn``,
``assessment.created``/``assessment.updated``, ``gate.set``, ``lifecycle.requested``,
``lifecycle.approved``, ``lifecycle.rejected``, ``lifecycle.withdrawn``, ``product.sunset``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.accounts.roles import ADMIN, PRODUCT_MANAGER
from apps.accounts.services import signature_check
from apps.audit.services import audit_changes, audit_record
from apps.catalog.models import STAGE_TRANSITIONS, ModelVersion, Product, Stage
from apps.catalog.selectors import product_list_for
from apps.catalog.services import product_transition, require_writable
from apps.core.exceptions import (
    Conflict,
    Forbidden,
    NotFound,
    clean_text,
    invalid,
)
from apps.core.hashing import content_hash
from apps.core.history import as_actor
from apps.portal.models import APIStatus, PublishedAPI

from . import gates
from .metrics import clean_targets
from .models import (
    REQUEST_TRANSITIONS,
    Assessment,
    BriefStatus,
    GateDefinition,
    LifecycleRequest,
    ProductBrief,
    RequestKind,
    RequestState,
)

# Up to this stage a new brief is in force at once; after it, it goes through a signed request.
BRIEF_FREE_STAGES = (Stage.CONCEPT, Stage.DESIGN)
AUTHORS = (PRODUCT_MANAGER, ADMIN)
TEXT_LIMIT = 20_000
MAX_COUNT = 2_147_483_647  # the columns are 32-bit integers on PostgreSQL


def _visible(actor: User, product: Product) -> None:
    if not product_list_for(user=actor).filter(pk=product.pk).exists():
        raise NotFound("not_found", "No such product, or it is outside your teams.")


def _require_author(actor: User, product: Product, doing: str) -> None:
    _visible(actor, product)
    if not (actor.is_superuser or actor.has_role(*AUTHORS, team=product.owner_team)):
        raise Forbidden(
            "forbidden",
            f"Only the product managers and admins of team {product.owner_team.slug} {doing}.",
        )


def _lock_product(product: Product) -> Product:
    return Product.objects.select_for_update().select_related("owner_team").get(pk=product.pk)


# --- briefs ------------------------------------------------------------------------------------


def _clean_stories(value: Any) -> list[dict]:
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise invalid("user_stories", "a list of {as_a, i_want, so_that}.")
    out = []
    for i, story in enumerate(value):
        where = f"user_stories[{i}]"
        if not isinstance(story, dict):
            raise invalid(where, "an object {as_a, i_want, so_that}.")
        cleaned = {k: clean_text(story.get(k), f"{where}.{k}", limit=1000) for k in STORY_KEYS}
        if not all(cleaned.values()):
            missing = [k for k, v in cleaned.items() if not v]
            raise invalid(where, f"say {', '.join(missing)} ('as a …, I want …, so that …').")
        out.append(cleaned)
    return out


STORY_KEYS = ("as_a", "i_want", "so_that")
DATA_KEYS = ("sources", "consent", "pii_handling")


def _clean_data_strategy(value: Any) -> dict:
    if value in (None, ""):
        return dict.fromkeys(DATA_KEYS, "")
    if not isinstance(value, dict):
        raise invalid("data_strategy", "an object {sources, consent, pii_handling}.")
    unknown = sorted(set(value) - set(DATA_KEYS))
    if unknown:
        raise invalid("data_strategy", f"unknown key(s) {', '.join(unknown)}.")
    return {k: clean_text(value.get(k), f"data_strategy.{k}", limit=5000) for k in DATA_KEYS}


def brief_content(brief: ProductBrief) -> dict:
    return {name: getattr(brief, name) for name in ProductBrief.CONTENT_FIELDS}


def brief_create(
    *,
    actor: User,
    product: Product,
    problem_statement: str,
    target_users: str = "",
    user_stories: Any = None,
    intended_uses: str = "",
    out_of_scope_uses: str = "",
    data_strategy: Any = None,
    target_metrics: Any = None,
    changelog: str = "",
) -> ProductBrief:
    """A new version of the product's brief: in force at once up to the design stage; after
    it, proposed, with a brief request that someone else signs (a change request of the brief).
    """
    _require_author(actor, product, "write its brief")
    content = {
        "problem_statement": clean_text(problem_statement, "problem_statement", required=True),
        "target_users": clean_text(target_users, "target_users"),
        "user_stories": _clean_stories(user_stories),
        "intended_uses": clean_text(intended_uses, "intended_uses"),
        "out_of_scope_uses": clean_text(out_of_scope_uses, "out_of_scope_uses"),
        "data_strategy": _clean_data_strategy(data_strategy),
        "target_metrics": clean_targets(target_metrics, product=product),
    }
    digest = content_hash(content)
    with transaction.atomic():
        product = _lock_product(product)
        require_writable(product)
        current = ProductBrief.objects.filter(
            product=product, status__in=(BriefStatus.IN_FORCE, BriefStatus.PROPOSED)
        )
        if any(b.content_hash == digest for b in current):
            raise Conflict("unchanged", "This brief is the same as the one in force (or proposed).")
        free = product.stage in BRIEF_FREE_STAGES
        if not free and current.filter(status=BriefStatus.PROPOSED).exists():
            raise Conflict(
                "pending",
                "A brief change is already waiting for a signature: decide or withdraw it first.",
            )
        last = ProductBrief.objects.filter(product=product).order_by("-version").first()
        brief = as_actor(
            ProductBrief(
                product=product,
                version=(last.version + 1) if last else 1,
                content_hash=digest,
                changelog=clean_text(changelog, "changelog", limit=5000),
                status=BriefStatus.IN_FORCE if free else BriefStatus.PROPOSED,
                created_by=actor,
                **content,
            ),
            actor,
        )
        if free:
            _supersede(actor, product)
        brief.save(force_insert=True)
        audit_record(
            actor=actor,
            verb="brief.created",
            obj=brief,
            product_id=product.pk,
            after={"version": brief.version, "status": brief.status, "content_hash": digest},
        )
        if not free:
            _open_request(
                actor=actor,
                product=product,
                kind=RequestKind.BRIEF,
                brief=brief,
                comment=brief.changelog,
            )
    return brief


def _supersede(actor: User | None, product: Product) -> None:
    for old in ProductBrief.objects.select_for_update().filter(
        product=product, status=BriefStatus.IN_FORCE
    ):
        old.status = BriefStatus.SUPERSEDED
        as_actor(old, actor).save()


# --- assessment --------------------------------------------------------------------------------

ASSESSMENT_FIELDS = (
    "technical",
    "ethical",
    "economic",
    "risks",
    "affected_groups",
    "model_version_id",
    "calls_per_month",
    "tokens_in_per_call",
    "tokens_out_per_call",
)


def _clean_risks(value: Any) -> list[dict]:
    if value in (None, ""):
        return []
    if not isinstance(value, list):
        raise invalid("risks", "a list of {title, likelihood, severity, mitigation}.")
    out = []
    for i, risk in enumerate(value):
        where = f"risks[{i}]"
        if not isinstance(risk, dict):
            raise invalid(where, "an object {title, likelihood, severity, mitigation}.")
        scores = {}
        for key in ("likelihood", "severity"):
            score = risk.get(key)
            if isinstance(score, str) and score.isdigit():
                score = int(score)
            if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
                raise invalid(f"{where}.{key}", "a whole number from 1 (low) to 5 (high).")
            scores[key] = score
        out.append(
            {
                "title": clean_text(risk.get("title"), f"{where}.title", required=True, limit=300),
                **scores,
                "mitigation": clean_text(risk.get("mitigation"), f"{where}.mitigation", limit=5000),
            }
        )
    return out


def _clean_groups(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid("affected_groups", "a list of names.")
    return [g for g in (clean_text(v, "affected_groups", limit=300) for v in value) if g]


def _count(value: Any, field: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if value in (None, ""):
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise invalid(field, f"a whole number from 0 to {MAX_COUNT:,}.")
    return value


def assessment_set(
    *,
    actor: User,
    product: Product,
    technical: str = "",
    ethical: str = "",
    economic: str = "",
    risks: Any = None,
    affected_groups: Any = None,
    model_version: ModelVersion | None = None,
    calls_per_month: Any = 0,
    tokens_in_per_call: Any = 0,
    tokens_out_per_call: Any = 0,
) -> Assessment:
    """Create or replace the product's feasibility and impact assessment (history kept)."""
    _require_author(actor, product, "assess it")
    values = {
        "technical": clean_text(technical, "technical"),
        "ethical": clean_text(ethical, "ethical"),
        "economic": clean_text(economic, "economic"),
        "risks": _clean_risks(risks),
        "affected_groups": _clean_groups(affected_groups),
        "model_version_id": model_version.pk if model_version else None,
        "calls_per_month": _count(calls_per_month, "calls_per_month"),
        "tokens_in_per_call": _count(tokens_in_per_call, "tokens_in_per_call"),
        "tokens_out_per_call": _count(tokens_out_per_call, "tokens_out_per_call"),
    }
    if model_version is not None and model_version.model.owner_team_id != product.owner_team_id:
        raise invalid("model_version", "not a model version of the product's team.")
    with transaction.atomic():
        product = _lock_product(product)
        require_writable(product)
        assessment = Assessment.objects.select_for_update().filter(product=product).first()
        if assessment is None:
            assessment = Assessment(product=product)
            before = None
        else:
            before = {name: getattr(assessment, name) for name in ASSESSMENT_FIELDS}
        for name, value in values.items():
            setattr(assessment, name, value)
        assessment.updated_by = actor
        after = {name: getattr(assessment, name) for name in ASSESSMENT_FIELDS}
        if before == after:
            return assessment
        as_actor(assessment, actor).save()
        if before is None:
            audit_record(
                actor=actor,
                verb="assessment.created",
                obj=assessment,
                product_id=product.pk,
                after=after,
            )
        else:
            audit_changes(
                actor=actor,
                verb="assessment.updated",
                obj=assessment,
                product_id=product.pk,
                before=before,
                after=after,
            )
    return assessment


# --- gate definitions --------------------------------------------------------------------------


def gate_set(
    *, actor: User, risk_class: str, stage: str, criteria: Any, signer_roles: Any
) -> GateDefinition:
    """Set the entry criteria of ``stage`` for products of ``risk_class`` (admins)."""
    if not (actor.is_superuser or actor.has_role(ADMIN)):
        raise Forbidden("forbidden", "Only an admin defines the stage gates.")
    from apps.catalog.models import RiskClass

    if risk_class not in RiskClass.values:
        raise invalid("risk_class", f"one of {', '.join(RiskClass.values)}.")
    if stage not in Stage.values:
        raise invalid("stage", f"one of {', '.join(Stage.values)}.")
    criteria, signer_roles = gates.clean_gate(criteria, signer_roles)
    with transaction.atomic():
        row = (
            GateDefinition.objects.select_for_update()
            .filter(risk_class=risk_class, stage=stage)
            .first()
        )
        before = (
            {"criteria": row.criteria, "signer_roles": row.signer_roles}
            if row
            else gates.default_gate(risk_class, stage)
        )
        row = row or GateDefinition(risk_class=risk_class, stage=stage)
        row.criteria, row.signer_roles = criteria, signer_roles
        as_actor(row, actor).save()
        audit_record(
            actor=actor,
            verb="gate.set",
            obj=row,
            before=before,
            after={"criteria": criteria, "signer_roles": signer_roles},
        )
    return row


# --- requests ----------------------------------------------------------------------------------


def request_fingerprint(req: LifecycleRequest) -> str:
    return content_hash(
        {
            "product": str(req.product_id),
            "kind": req.kind,
            "from_stage": req.from_stage,
            "to_stage": req.to_stage,
            "brief": req.brief.content_hash if req.brief_id else None,
            "sunset_at": req.sunset_at,
            "migration_note": req.migration_note,
            "successor": str(req.successor_id) if req.successor_id else None,
            "comment": req.comment,
        }
    )


def request_facts(req: LifecycleRequest) -> gates.RequestFacts:
    return gates.RequestFacts(sunset_at=req.sunset_at, migration_note=req.migration_note)


def _open_request(
    *,
    actor: User,
    product: Product,
    kind: str,
    to_stage: str = "",
    brief: ProductBrief | None = None,
    sunset_at: datetime | None = None,
    migration_note: str = "",
    successor: PublishedAPI | None = None,
    comment: str = "",
) -> LifecycleRequest:
    req = as_actor(
        LifecycleRequest(
            product=product,
            kind=kind,
            from_stage=product.stage,
            to_stage=to_stage,
            brief=brief,
            sunset_at=sunset_at,
            migration_note=migration_note,
            successor=successor,
            comment=comment,
            requested_by=actor,
        ),
        actor,
    )
    req.fingerprint = request_fingerprint(req)
    try:
        with transaction.atomic():
            req.save(force_insert=True)
    except IntegrityError:
        raise Conflict(
            "pending",
            f"{product.slug} already has a request waiting for a signature: decide or withdraw "
            "it first.",
        ) from None
    audit_record(
        actor=actor,
        verb="lifecycle.requested",
        obj=req,
        product_id=product.pk,
        after={
            "kind": kind,
            "from_stage": req.from_stage,
            "to_stage": to_stage,
            "brief": brief.version if brief else None,
            "sunset_at": sunset_at,
            "fingerprint": req.fingerprint,
        },
    )
    return req


def _require_met(checks: list[gates.Check], to_stage: str) -> None:
    unmet = [c for c in checks if not c.met]
    if unmet:
        raise Conflict(
            "gate_unmet",
            f"The entry criteria of {to_stage} are not met: "
            + "; ".join(f"{c.label} — {c.detail}" for c in unmet),
            {"criteria": [c.code for c in unmet]},
        )


def stage_request_create(
    *,
    actor: User,
    product: Product,
    to_stage: str,
    comment: str = "",
    sunset_at: datetime | None = None,
    migration_note: str = "",
    successor: PublishedAPI | None = None,
) -> LifecycleRequest:
    """Ask to move ``product`` to ``to_stage``; refused (409 ``gate_unmet``, naming each unmet
    criterion) until the stage's entry criteria are met."""
    _require_author(actor, product, "request its stage moves")
    if to_stage not in Stage.values:
        raise invalid("to_stage", f"one of {', '.join(Stage.values)}.")
    comment = clean_text(comment, "comment", limit=5000)
    migration_note = clean_text(migration_note, "migration_note", limit=5000)
    if to_stage != Stage.DEPRECATED and (sunset_at or migration_note or successor):
        raise invalid("sunset_at", "a sunset date and migration note go with a deprecation.")
    if successor is not None:
        if successor.product_id == product.pk:
            raise invalid("successor", "the successor is another product's API.")
        if successor.status != APIStatus.PUBLISHED:
            raise invalid("successor", f"{successor.slug} is not published.")
    with transaction.atomic():
        product = _lock_product(product)
        allowed = STAGE_TRANSITIONS[product.stage]
        if to_stage not in allowed:
            raise Conflict(
                "invalid_transition",
                f"A product in {product.stage} cannot move to {to_stage}; allowed: "
                + (", ".join(allowed) if allowed else "none (retired is final)")
                + ".",
                {"to_stage": [f"{product.stage} → {to_stage} is not allowed."]},
            )
        facts = gates.RequestFacts(sunset_at=sunset_at, migration_note=migration_note)
        _require_met(gates.checklist(product, to_stage, facts), to_stage)
        return _open_request(
            actor=actor,
            product=product,
            kind=RequestKind.STAGE,
            to_stage=to_stage,
            sunset_at=sunset_at,
            migration_note=migration_note,
            successor=successor,
            comment=comment,
        )


def _lock_request(req: LifecycleRequest) -> LifecycleRequest:
    return (
        LifecycleRequest.objects.select_for_update(of=("self",))
        .select_related("product", "product__owner_team", "brief", "successor", "requested_by")
        .get(pk=req.pk)
    )


def _move(*, actor: User | None, req: LifecycleRequest, to: str) -> None:
    if to not in REQUEST_TRANSITIONS[req.state]:
        raise Conflict(
            "invalid_transition",
            f"This request is {req.state}; it cannot become {to}.",
            {"state": [f"{req.state} → {to} is not allowed."]},
        )
    req.state = to


def signer_role(actor: User, req: LifecycleRequest) -> str:
    """The role ``actor`` signs ``req`` as; refuses the requester and those without a signer
    role of the gate in the product's team."""
    if req.requested_by_id == actor.pk:
        raise Forbidden(
            "separation_of_duties",
            "You requested this move, so someone else must sign it.",
        )
    stage = req.to_stage if req.kind == RequestKind.STAGE else req.product.stage
    roles = gates.gate_for(req.product, stage)["signer_roles"]
    held = actor.roles(team=req.product.owner_team)
    for role in roles:
        if role in held:
            return role
    raise Forbidden(
        "not_a_signer",
        f"Only a {' or '.join(roles)} of team {req.product.owner_team.slug} signs this move.",
    )


def _check_signature(actor: User, request: LifecycleRequest, password: str) -> LifecycleRequest:
    """May ``actor`` sign ``request`` (told before the password), and is it their password?"""
    visible = LifecycleRequest.objects.select_related("product", "product__owner_team").get(
        pk=request.pk
    )
    _visible(actor, visible.product)
    signer_role(actor, visible)
    signature_check(
        actor=actor,
        password=password,
        obj=visible,
        product_id=visible.product_id,
        what="stage decisions are signed with it",
    )
    return visible


def request_approve(
    *, actor: User, request: LifecycleRequest, password: str, comment: str = ""
) -> LifecycleRequest:
    """Sign the request: the criteria are checked again and stored with the signature; a
    stage request moves the product, a brief request brings the brief into force."""
    comment = clean_text(comment, "comment", limit=5000)
    visible = _check_signature(actor, request, password)
    with transaction.atomic():
        product = _lock_product(visible.product)
        req = _lock_request(visible)
        role = signer_role(actor, req)
        _move(actor=actor, req=req, to=RequestState.APPROVED)
        if req.fingerprint != request_fingerprint(req):
            raise Conflict("changed", "The request changed since it was made; ask again.")
        checks: list[gates.Check] = []
        if req.kind == RequestKind.STAGE:
            if product.stage != req.from_stage:
                raise Conflict(
                    "stale",
                    f"{product.slug} is now in {product.stage}, not {req.from_stage}: withdraw "
                    "this request and ask again.",
                )
            checks = gates.checklist(product, req.to_stage, request_facts(req))
            _require_met(checks, req.to_stage)
        req.decided_by = actor
        req.decided_role = role
        req.decision_comment = comment
        req.decided_at = timezone.now()
        req.signed_fingerprint = req.fingerprint
        req.evidence = [c.as_dict() for c in checks]
        as_actor(req, actor).save()
        audit_record(
            actor=actor,
            verb="lifecycle.approved",
            obj=req,
            product_id=product.pk,
            after={
                "kind": req.kind,
                "to_stage": req.to_stage,
                "role": role,
                "comment": comment,
                "fingerprint": req.fingerprint,
                "checklist": req.evidence,
            },
        )
        signed = {"request": str(req.pk), "signed_by": actor.get_username(), "role": role}
        if req.kind == RequestKind.BRIEF:
            _supersede(actor, product)
            brief = ProductBrief.objects.select_for_update().get(pk=req.brief_id)
            brief.status = BriefStatus.IN_FORCE
            as_actor(brief, actor).save()
            audit_record(
                actor=actor,
                verb="brief.in_force",
                obj=brief,
                product_id=product.pk,
                after={"version": brief.version, **signed},
            )
        else:
            product_transition(actor=actor, product=product, to_stage=req.to_stage, signed=signed)
            if req.to_stage == Stage.DEPRECATED:
                _deprecate_apis(req)
    return req


def _deprecate_apis(req: LifecycleRequest) -> None:
    """The product's published APIs are deprecated with the request's sunset date and note, in
    the requester's name (who asked for exactly this; the signature authorised it)."""
    from apps.portal.services import api_deprecate

    for api in PublishedAPI.objects.filter(product=req.product, status=APIStatus.PUBLISHED):
        api_deprecate(
            actor=req.requested_by,
            api=api,
            sunset_at=req.sunset_at,
            migration_note=req.migration_note,
            successor=req.successor,
        )


def request_reject(
    *, actor: User, request: LifecycleRequest, password: str, comment: str
) -> LifecycleRequest:
    comment = clean_text(comment, "comment", limit=5000)
    if not comment:
        raise invalid("comment", "Say why you reject the move: a comment is required.")
    visible = _check_signature(actor, request, password)
    with transaction.atomic():
        req = _lock_request(visible)
        role = signer_role(actor, req)
        _move(actor=actor, req=req, to=RequestState.REJECTED)
        req.decided_by, req.decided_role = actor, role
        req.decision_comment, req.decided_at = comment, timezone.now()
        req.signed_fingerprint = req.fingerprint
        as_actor(req, actor).save()
        audit_record(
            actor=actor,
            verb="lifecycle.rejected",
            obj=req,
            product_id=req.product_id,
            after={"kind": req.kind, "to_stage": req.to_stage, "role": role, "comment": comment},
        )
        if req.brief_id:
            _close_brief(actor, req.brief_id, BriefStatus.REJECTED, "brief.rejected", req)
    return req


def _close_brief(actor, brief_id, status: str, verb: str, req: LifecycleRequest) -> None:
    brief = ProductBrief.objects.select_for_update().get(pk=brief_id)
    brief.status = status
    as_actor(brief, actor).save()
    audit_record(
        actor=actor,
        verb=verb,
        obj=brief,
        product_id=req.product_id,
        after={"version": brief.version, "request": str(req.pk)},
    )


def request_withdraw(*, actor: User, request: LifecycleRequest) -> LifecycleRequest:
    """The requester (or an admin of the team) takes a pending request back."""
    with transaction.atomic():
        req = _lock_request(request)
        _visible(actor, req.product)
        if req.requested_by_id != actor.pk and not (
            actor.is_superuser or actor.has_role(ADMIN, team=req.product.owner_team)
        ):
            raise Forbidden("forbidden", "Only the requester or an admin withdraws a request.")
        _move(actor=actor, req=req, to=RequestState.WITHDRAWN)
        req.decided_at = timezone.now()
        as_actor(req, actor).save()
        audit_record(
            actor=actor,
            verb="lifecycle.withdrawn",
            obj=req,
            product_id=req.product_id,
            after={"kind": req.kind, "to_stage": req.to_stage},
        )
        if req.brief_id:
            _close_brief(actor, req.brief_id, BriefStatus.WITHDRAWN, "brief.withdrawn", req)
    return req


# --- the economic estimate ---------------------------------------------------------------------


def monthly_estimate(assessment: Assessment) -> Decimal | None:
    """Expected cost a month: calls x (tokens in x input price + tokens out x output price),
    priced by the assessment's model version's provider price table; None without a price."""
    from apps.gateway.models import ProviderPrice

    mv = assessment.model_version
    if mv is None or not assessment.calls_per_month:
        return None
    price = ProviderPrice.objects.filter(
        provider__slug=mv.provider, provider_model=mv.provider_model
    ).first()
    if price is None:
        return None
    per_call = (
        Decimal(assessment.tokens_in_per_call) * price.input_per_million
        + Decimal(assessment.tokens_out_per_call) * price.output_per_million
    ) / Decimal(1_000_000)
    return (per_call * assessment.calls_per_month).quantize(Decimal("0.01"))


# --- planned retirement ------------------------------------------------------------------------


def product_sunset(*, request: LifecycleRequest, now: datetime | None = None) -> dict:
    """At the sunset date of an approved deprecation, by the system (the signed deprecation
    decided it): its APIs are retired (410), their subscriptions end, keys left without an
    active subscription are revoked, payloads past the retention are purged, and the product is
    retired (read-only). Idempotent: a second call finds nothing due."""
    from apps.compliance.retention import purge_payloads
    from apps.portal.services import api_sunset

    now = now or timezone.now()
    with transaction.atomic():
        req = _lock_request(request)
        product = _lock_product(req.product)
        if (
            req.kind != RequestKind.STAGE
            or req.to_stage != Stage.DEPRECATED
            or req.state != RequestState.APPROVED
            or req.sunset_at is None
            or req.sunset_at > now
            or req.sunset_done_at is not None
            or product.stage != Stage.DEPRECATED
        ):
            return {"product": product.slug, "due": False}
        reports = [
            api_sunset(api=api, now=now)
            for api in PublishedAPI.objects.filter(product=product, status=APIStatus.DEPRECATED)
        ]
        product_transition(
            actor=None,
            product=product,
            to_stage=Stage.RETIRED,
            signed={
                "request": str(req.pk),
                "signed_by": req.decided_by.get_username() if req.decided_by else None,
                "role": req.decided_role,
                "by": "the sunset date",
            },
        )
        req.sunset_done_at = now
        as_actor(req, None).save(update_fields=["sunset_done_at", "updated_at"])
        audit_record(
            actor=None,
            verb="product.sunset",
            obj=product,
            product_id=product.pk,
            after={
                "request": str(req.pk),
                "sunset_at": req.sunset_at,
                "apis": [r.api for r in reports],
                "subscriptions_cancelled": sum(r.cancelled for r in reports),
                "keys_revoked": sum(r.revoked for r in reports),
            },
        )
    purge = purge_payloads(now=now)
    return {
        "product": product.slug,
        "due": True,
        "apis": [r.api for r in reports],
        "subscriptions_cancelled": sum(r.cancelled for r in reports),
        "keys_revoked": sum(r.revoked for r in reports),
        "payloads_purged": purge.counts,
    }


def sunsets_due(now: datetime | None = None) -> list[LifecycleRequest]:
    now = now or timezone.now()
    return list(
        LifecycleRequest.objects.filter(
            kind=RequestKind.STAGE,
            to_stage=Stage.DEPRECATED,
            state=RequestState.APPROVED,
            sunset_at__lte=now,
            sunset_done_at__isnull=True,
            product__stage=Stage.DEPRECATED,
        ).order_by("sunset_at")
    )

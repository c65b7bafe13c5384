"""Every write of the developer portal: published APIs, plans, applications, subscriptions and
API keys.

Each service is one transaction that locks what it changes, checks the actor's right and the
state (the transition tables below are the only place states move), writes with a history
actor, appends one audit event (``product_id`` set when the object belongs to a product) and
sends its notifications on commit. A key's secret exists only in the ``NewKey`` a create or
rotate returns: the database keeps its sha256, audit events and history its prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import audit_changes, audit_record
from apps.catalog.models import Product
from apps.catalog.services import require_writable
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.core.history import as_actor
from apps.core.models import UNSET
from apps.releases.models import Release, ReleaseStatus
from apps.releases.selectors import release_current

from . import notifications
from .keys import key_generate, key_hash
from .models import (
    LIVE_SUBSCRIPTION_STATES,
    APIKey,
    APIStatus,
    Application,
    Plan,
    PublishedAPI,
    Subscription,
    SubscriptionState,
)
from .selectors import can_change_product, can_decide, is_auditor

# The one table of allowed status moves of a published API.
API_TRANSITIONS: dict[str, tuple[str, ...]] = {
    APIStatus.DRAFT: (APIStatus.PUBLISHED,),
    APIStatus.PUBLISHED: (APIStatus.DEPRECATED,),
    APIStatus.DEPRECATED: (APIStatus.RETIRED,),
    APIStatus.RETIRED: (),
}

# The one table of a subscription's moves: decision -> (from states, to state, audit verb).
SUBSCRIPTION_TRANSITIONS: dict[str, tuple[tuple[str, ...], str, str]] = {
    "approved": (
        (SubscriptionState.PENDING,),
        SubscriptionState.ACTIVE,
        "subscription.approved",
    ),
    "rejected": (
        (SubscriptionState.PENDING,),
        SubscriptionState.REJECTED,
        "subscription.rejected",
    ),
    "suspended": (
        (SubscriptionState.ACTIVE,),
        SubscriptionState.SUSPENDED,
        "subscription.suspended",
    ),
    "resumed": (
        (SubscriptionState.SUSPENDED,),
        SubscriptionState.ACTIVE,
        "subscription.resumed",
    ),
    "cancelled": (LIVE_SUBSCRIPTION_STATES, SubscriptionState.CANCELLED, "subscription.cancelled"),
}

SERVABLE_RELEASE_STATUSES = (ReleaseStatus.RELEASED, ReleaseStatus.DEPRECATED)
API_FIELDS = ("slug", "name", "product", "release", "status", "summary", "docs", "successor")
PLAN_FIELDS = (
    "slug",
    "name",
    "requests_per_minute",
    "tokens_per_month",
    "approval_required",
    "terms",
    "active",
)
APPLICATION_FIELDS = ("name", "description")
MAX_GRACE_HOURS = 24 * 30
AUTO_APPROVED = "auto-approved"
SWITCHED_TO_AUTO = "plan switched to auto-approve"


def _snapshot(obj: models.Model, fields: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in fields:
        field = obj._meta.get_field(name)
        if isinstance(field, models.ForeignKey):
            value = getattr(obj, field.attname)
            out[name] = str(value) if value is not None else None
        else:
            out[name] = getattr(obj, name)
    return out


def _invalid(field: str, message: str, code: str = "invalid") -> ApplicationError:
    return ApplicationError(code, message, {field: [message]})


def _clean(obj: models.Model, exclude: list[str] | None = None) -> None:
    """Model validation as a 400 with the fields' messages (uniqueness is checked apart)."""
    try:
        obj.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as exc:
        fields = {k: [str(m) for m in v] for k, v in exc.message_dict.items()}
        first = next(iter(fields.items()))
        raise ApplicationError("invalid", f"{first[0]}: {first[1][0]}", fields) from None


def _insert(obj: models.Model, conflict: ApplicationError) -> None:
    """Insert ``obj``; a unique value taken meanwhile is ``conflict``, not a 500."""
    try:
        with transaction.atomic():
            obj.save(force_insert=True)
    except IntegrityError:
        raise conflict from None


def _require_product_change(actor: User, product: Product) -> None:
    if not can_change_product(actor, product):
        raise Forbidden(
            "forbidden",
            f"Only the product managers and admins of {product.owner_team} can publish and "
            f"change the APIs and plans of {product.slug}.",
        )
    require_writable(product)


def _future(value: datetime | None, field: str, what: str) -> datetime:
    if value is None:
        raise _invalid(field, f"{what} is required.")
    if timezone.is_naive(value):
        raise _invalid(field, f"{what} needs a time zone.")
    if value <= timezone.now():
        raise _invalid(field, f"{what} must be in the future.")
    return value


# --- Published APIs --------------------------------------------------------------------------


def _check_release(product: Product, release: Release | None) -> None:
    if release is None:
        return
    if release.product_id != product.pk:
        raise _invalid("release", f"Release {release} is not a release of {product.slug}.")
    if release.status not in SERVABLE_RELEASE_STATUSES:
        raise _invalid(
            "release",
            f"Release {release} is {release.status}; an API serves a released (or deprecated) "
            "release only.",
        )


def _lock_api(api: PublishedAPI) -> PublishedAPI:
    return (
        PublishedAPI.objects.select_for_update(of=("self",))
        .select_related("product", "product__owner_team")
        .get(pk=api.pk)
    )


def _move_api(*, actor: User, api: PublishedAPI, to: str, verb: str, extra: dict | None = None):
    """The one place an API's status changes; the caller holds the row lock."""
    current = api.status
    if to not in API_TRANSITIONS[current]:
        allowed = ", ".join(API_TRANSITIONS[current]) or "none (retired is final)"
        raise Conflict(
            "invalid_transition",
            f"API {api.slug} is {current}; it cannot become {to} (allowed: {allowed}).",
            {"status": [f"{current} → {to} is not allowed."]},
        )
    api.status = to
    as_actor(api, actor).save()
    audit_record(
        actor=actor,
        verb=verb,
        obj=api,
        product_id=api.product_id,
        before={"status": current},
        after={"status": to, **(extra or {})},
    )
    return api


def api_create(
    *,
    actor: User,
    product: Product,
    slug: str,
    name: str,
    summary: str = "",
    docs: str = "",
    release: Release | None = None,
) -> PublishedAPI:
    """A draft API over ``product``, following its current release or pinned to ``release``."""
    _require_product_change(actor, product)
    _check_release(product, release)
    with transaction.atomic():
        api = as_actor(
            PublishedAPI(
                slug=slug,
                name=(name or "").strip(),
                product=product,
                release=release,
                summary=summary or "",
                docs=docs or "",
                created_by=actor,
            ),
            actor,
        )
        _clean(api)
        if PublishedAPI.objects.filter(slug=slug).exists():
            raise Conflict(
                "duplicate", f"An API named {slug} already exists.", {"slug": ["Already used."]}
            )
        _insert(
            api,
            Conflict("duplicate", f"An API named {slug} already exists.", {"slug": ["Taken."]}),
        )
        audit_record(
            actor=actor,
            verb="api.created",
            obj=api,
            product_id=product.pk,
            after=_snapshot(api, API_FIELDS),
        )
    return api


def api_update(
    *,
    actor: User,
    api: PublishedAPI,
    name: Any = UNSET,
    summary: Any = UNSET,
    docs: Any = UNSET,
    release: Any = UNSET,
    successor: Any = UNSET,
) -> PublishedAPI:
    """Change an API's descriptive fields, its pinned release (None: follow the product's
    current release) or its successor. A retired API is final."""
    with transaction.atomic():
        api = _lock_api(api)
        _require_product_change(actor, api.product)
        if api.status == APIStatus.RETIRED:
            raise Conflict("retired", f"API {api.slug} is retired; it cannot be changed.")
        before = _snapshot(api, API_FIELDS)
        if name is not UNSET:
            api.name = (name or "").strip()
        if summary is not UNSET:
            api.summary = summary or ""
        if docs is not UNSET:
            api.docs = docs or ""
        if release is not UNSET:
            _check_release(api.product, release)
            if (
                release is None
                and api.status != APIStatus.DRAFT
                and release_current(product=api.product) is None
            ):
                raise Conflict(
                    "no_release",
                    f"{api.product.slug} has no released release to follow; keep the pin.",
                    {"release": ["No current release to follow."]},
                )
            api.release = release
        if successor is not UNSET:
            _check_successor(api, successor)
            api.successor = successor
        _clean(api)
        after = _snapshot(api, API_FIELDS)
        if after == before:
            return api
        as_actor(api, actor).save()
        audit_changes(
            actor=actor,
            verb="api.changed",
            obj=api,
            product_id=api.product_id,
            before=before,
            after=after,
        )
    return api


def _check_successor(api: PublishedAPI, successor: PublishedAPI | None) -> None:
    if successor is None:
        return
    if successor.pk == api.pk:
        raise _invalid("successor", "An API cannot be its own successor.")
    if successor.status != APIStatus.PUBLISHED:
        raise _invalid(
            "successor", f"The successor {successor.slug} must be published ({successor.status})."
        )


def api_publish(*, actor: User, api: PublishedAPI) -> PublishedAPI:
    """draft → published, when there is a release to serve (the pin, or the current one)."""
    with transaction.atomic():
        api = _lock_api(api)
        _require_product_change(actor, api.product)
        serving = api.release if api.release_id else release_current(product=api.product)
        if api.status == APIStatus.DRAFT and serving is None:
            raise Conflict(
                "no_release",
                f"{api.product.slug} has no released release and API {api.slug} pins none: "
                "there is nothing to serve. Release the product (or pin a release) first.",
                {"release": ["No release to serve."]},
            )
        api.published_at = timezone.now()
        return _move_api(
            actor=actor,
            api=api,
            to=APIStatus.PUBLISHED,
            verb="api.published",
            extra={"serving": str(serving.pk) if serving else None},
        )


def api_deprecate(
    *,
    actor: User,
    api: PublishedAPI,
    sunset_at: datetime,
    migration_note: str,
    successor: PublishedAPI | None = None,
) -> PublishedAPI:
    """published → deprecated: no new subscriptions; the active subscribers are told by e-mail
    when it stops answering (``sunset_at``) and what to do (``migration_note``)."""
    sunset_at = _future(sunset_at, "sunset_at", "The sunset date")
    migration_note = (migration_note or "").strip()
    if not migration_note:
        raise _invalid("migration_note", "Tell subscribers what to do next: a migration note.")
    with transaction.atomic():
        api = _lock_api(api)
        _require_product_change(actor, api.product)
        if successor is not None and api.status == APIStatus.PUBLISHED:
            _check_successor(api, successor)
        api.deprecated_at = timezone.now()
        api.sunset_at = sunset_at
        api.migration_note = migration_note
        if successor is not None:
            api.successor = successor
        _move_api(
            actor=actor,
            api=api,
            to=APIStatus.DEPRECATED,
            verb="api.deprecated",
            extra={
                "sunset_at": sunset_at,
                "migration_note": migration_note,
                "successor": str(successor.pk) if successor else None,
            },
        )
        notifications.enqueue("api_deprecated", api.pk)
    return api


def api_retire(*, actor: User, api: PublishedAPI) -> PublishedAPI:
    """deprecated → retired: the API answers no more (410)."""
    with transaction.atomic():
        api = _lock_api(api)
        _require_product_change(actor, api.product)
        api.retired_at = timezone.now()
        return _move_api(actor=actor, api=api, to=APIStatus.RETIRED, verb="api.retired")


@dataclass(frozen=True)
class SunsetReport:
    api: str
    cancelled: int
    revoked: int


def api_sunset(*, api: PublishedAPI, now: datetime | None = None) -> SunsetReport:
    """At its sunset date a deprecated API is retired by the system (no actor; the signed
    deprecation decided it): it answers 410, its live subscriptions end, and the keys of their
    applications that are left without an active subscription are revoked."""
    now = now or timezone.now()
    with transaction.atomic():
        api = _lock_api(api)
        if api.status != APIStatus.DEPRECATED or api.sunset_at is None or api.sunset_at > now:
            raise Conflict(
                "not_due",
                f"API {api.slug} is {api.status}"
                + (f", sunset {api.sunset_at:%Y-%m-%d %H:%M}" if api.sunset_at else "")
                + ": it is not due to be retired.",
            )
        api.retired_at = now
        _move_api(
            actor=None,
            api=api,
            to=APIStatus.RETIRED,
            verb="api.retired",
            extra={"reason": "sunset date reached"},
        )
        subs = list(
            Subscription.objects.select_for_update(of=("self",))
            .select_related("application", "api", "plan")
            .filter(api=api, state__in=LIVE_SUBSCRIPTION_STATES)
            .order_by("created_at")
        )
        for sub in subs:
            _decide(
                actor=None,
                sub=sub,
                decision="cancelled",
                reason="the API reached its sunset date",
                notify=False,
            )
        app_ids = {sub.application_id for sub in subs}
        still_active = set(
            Subscription.objects.filter(
                application_id__in=app_ids, state=SubscriptionState.ACTIVE
            ).values_list("application_id", flat=True)
        )
        revoked = 0
        for key in APIKey.objects.select_for_update().filter(
            application_id__in=app_ids - still_active, revoked_at__isnull=True
        ):
            key.revoked_at = now
            as_actor(key, None).save(update_fields=["revoked_at", "updated_at"])
            audit_record(
                actor=None,
                verb="key.revoked",
                obj=key,
                before={"revoked_at": None},
                after={"revoked_at": now, "prefix": key.prefix, "reason": f"{api.slug} sunset"},
            )
            revoked += 1
    return SunsetReport(api=api.slug, cancelled=len(subs), revoked=revoked)


# --- Plans -----------------------------------------------------------------------------------


def _check_quota(tokens_per_month: int | None) -> None:
    if tokens_per_month is not None and (
        isinstance(tokens_per_month, bool) or int(tokens_per_month) < 1
    ):
        raise _invalid(
            "tokens_per_month", "A monthly token quota is at least 1 (or empty: no quota)."
        )


def plan_create(
    *,
    actor: User,
    api: PublishedAPI,
    slug: str,
    name: str,
    requests_per_minute: int,
    tokens_per_month: int | None = None,
    approval_required: bool = True,
    terms: str = "",
) -> Plan:
    with transaction.atomic():
        api = _lock_api(api)
        _require_product_change(actor, api.product)
        if api.status == APIStatus.RETIRED:
            raise Conflict("retired", f"API {api.slug} is retired; it takes no new plans.")
        _check_quota(tokens_per_month)
        plan = as_actor(
            Plan(
                api=api,
                slug=slug,
                name=(name or "").strip(),
                requests_per_minute=requests_per_minute,
                tokens_per_month=tokens_per_month,
                approval_required=approval_required,
                terms=terms or "",
                created_by=actor,
            ),
            actor,
        )
        _clean(plan, exclude=["api"])
        duplicate = Conflict(
            "duplicate", f"API {api.slug} already has a plan {slug}.", {"slug": ["Already used."]}
        )
        if Plan.objects.filter(api=api, slug=slug).exists():
            raise duplicate
        _insert(plan, duplicate)
        audit_record(
            actor=actor,
            verb="plan.created",
            obj=plan,
            product_id=api.product_id,
            after={"api": api.slug, **_snapshot(plan, PLAN_FIELDS)},
        )
    return plan


def plan_update(
    *,
    actor: User,
    plan: Plan,
    name: Any = UNSET,
    requests_per_minute: Any = UNSET,
    tokens_per_month: Any = UNSET,
    approval_required: Any = UNSET,
    terms: Any = UNSET,
    active: Any = UNSET,
    approve_pending: bool | None = None,
) -> Plan:
    """Change a plan. Switching ``approval_required`` off while requests wait asks what to do
    with them: ``approve_pending`` True approves them all, False leaves them pending, None (not
    said) is a 409 ``pending_backlog`` naming how many wait. The actor's own requests are never
    approved this way: they stay pending for another approver."""
    with transaction.atomic():
        plan = (
            Plan.objects.select_for_update(of=("self",))
            .select_related("api", "api__product", "api__product__owner_team")
            .get(pk=plan.pk)
        )
        api = plan.api
        _require_product_change(actor, api.product)
        before = _snapshot(plan, PLAN_FIELDS)
        for field, value in (
            ("name", name),
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_month", tokens_per_month),
            ("approval_required", approval_required),
            ("terms", terms),
            ("active", active),
        ):
            if value is not UNSET:
                setattr(plan, field, value.strip() if field == "name" and value else value)
        if tokens_per_month is not UNSET:
            _check_quota(tokens_per_month)
        plan.terms = plan.terms or ""
        _clean(plan, exclude=["api"])
        after = _snapshot(plan, PLAN_FIELDS)
        pending: list[Subscription] = []
        if before["approval_required"] and not after["approval_required"]:
            pending = list(
                Subscription.objects.select_for_update(of=("self",))
                .select_related("application")
                .filter(plan=plan, state=SubscriptionState.PENDING)
                .order_by("created_at")
            )
            if pending and approve_pending is None:
                raise Conflict(
                    "pending_backlog",
                    f"{len(pending)} subscription request(s) to plan {plan.slug} are pending. "
                    "Say whether to approve them all now (approve_pending=true) or to leave them "
                    "pending for a decision (approve_pending=false).",
                    {
                        "approve_pending": [
                            f"{len(pending)} pending; answer true (approve them) or false."
                        ],
                        "pending": [str(len(pending))],
                    },
                )
        if after == before:
            return plan
        as_actor(plan, actor).save()
        audit_changes(
            actor=actor,
            verb="plan.changed",
            obj=plan,
            product_id=api.product_id,
            before=before,
            after=after,
        )
        if approve_pending:
            # Separation of duties holds here too: the actor's own requests stay pending for
            # someone else to decide.
            for sub in (s for s in pending if s.requested_by_id != actor.pk):
                sub.api = api
                sub.plan = plan
                _decide(
                    actor=actor,
                    sub=sub,
                    reason=SWITCHED_TO_AUTO,
                    decision="approved",
                )
    return plan


# --- Applications ----------------------------------------------------------------------------


def _require_not_read_only(actor: User) -> None:
    if not actor.is_superuser and is_auditor(actor) and actor.roles() <= {"auditor"}:
        raise Forbidden("forbidden", "Auditors are read-only: they cannot own applications.")


def _name_taken(owner: User, name: str, exclude_pk: Any = None) -> ApplicationError:
    return ApplicationError(
        "invalid",
        f"You already have an application named {name}.",
        {"name": ["You already have an application with this name."]},
    )


def application_create(*, actor: User, name: str, description: str = "") -> Application:
    _require_not_read_only(actor)
    name = (name or "").strip()
    with transaction.atomic():
        app = as_actor(Application(owner=actor, name=name, description=description or ""), actor)
        _clean(app, exclude=["owner"])
        if Application.objects.filter(owner=actor, name=name).exists():
            raise _name_taken(actor, name)
        _insert(app, _name_taken(actor, name))
        audit_record(
            actor=actor,
            verb="application.created",
            obj=app,
            after={"owner": actor.get_username(), **_snapshot(app, APPLICATION_FIELDS)},
        )
    return app


def _require_owner(actor: User, application: Application, doing: str) -> None:
    if application.owner_id != actor.pk and not actor.is_superuser:
        raise Forbidden(
            "forbidden", f"Only the owner of application {application.name} can {doing}."
        )


def application_update(
    *, actor: User, application: Application, name: Any = UNSET, description: Any = UNSET
) -> Application:
    with transaction.atomic():
        app = Application.objects.select_for_update().get(pk=application.pk)
        _require_owner(actor, app, "change it")
        before = _snapshot(app, APPLICATION_FIELDS)
        if name is not UNSET:
            app.name = (name or "").strip()
        if description is not UNSET:
            app.description = description or ""
        _clean(app, exclude=["owner"])
        after = _snapshot(app, APPLICATION_FIELDS)
        if after == before:
            return app
        if (
            name is not UNSET
            and Application.objects.filter(owner_id=app.owner_id, name=app.name)
            .exclude(pk=app.pk)
            .exists()
        ):
            raise _name_taken(app.owner, app.name)
        try:
            with transaction.atomic():
                as_actor(app, actor).save()
        except IntegrityError:
            raise _name_taken(app.owner, app.name) from None
        audit_changes(actor=actor, verb="application.changed", obj=app, before=before, after=after)
    return app


# --- Subscriptions ---------------------------------------------------------------------------


def _sub_snapshot(sub: Subscription) -> dict:
    return {
        "application": str(sub.application_id),
        "api": sub.api.slug,
        "plan": sub.plan.slug,
        "state": sub.state,
    }


def subscription_request(
    *, actor: User, application: Application, plan: Plan, justification: str = ""
) -> Subscription:
    """Ask for ``plan`` for ``application``: active at once on a plan without approval,
    pending (the approvers are told) otherwise."""
    if application.owner_id != actor.pk:
        raise Forbidden(
            "forbidden", f"Only the owner of application {application.name} can subscribe it."
        )
    with transaction.atomic():
        plan = (
            Plan.objects.select_for_update(of=("self",))
            .select_related("api", "api__product")
            .get(pk=plan.pk)
        )
        api = plan.api
        if api.status == APIStatus.DEPRECATED:
            raise Conflict(
                "api_deprecated",
                f"API {api.slug} is deprecated: it takes no new subscriptions"
                + (f"; subscribe to {api.successor.slug} instead." if api.successor_id else "."),
                {"plan": ["The API is deprecated."]},
            )
        if api.status != APIStatus.PUBLISHED:
            raise Conflict(
                "not_published",
                f"API {api.slug} is {api.status}; only a published API takes subscriptions.",
                {"plan": [f"The API is {api.status}."]},
            )
        if not plan.active:
            raise Conflict(
                "plan_inactive",
                f"Plan {plan.slug} of {api.slug} takes no new subscriptions.",
                {"plan": ["This plan is closed to new subscriptions."]},
            )
        existing = Subscription.objects.filter(
            application=application, api=api, state__in=LIVE_SUBSCRIPTION_STATES
        ).first()
        already = Conflict(
            "already_subscribed",
            f"Application {application.name} already has a subscription to {api.slug}"
            + (f" ({existing.state}, plan {existing.plan.slug})." if existing else ".")
            + " Cancel it first to change plans.",
            {"plan": ["Already subscribed to this API."]},
        )
        if existing is not None:
            raise already
        auto = not plan.approval_required
        now = timezone.now()
        sub = as_actor(
            Subscription(
                application=application,
                api=api,
                plan=plan,
                state=SubscriptionState.ACTIVE if auto else SubscriptionState.PENDING,
                justification=justification or "",
                requested_by=actor,
                decided_by=None,
                decided_at=now if auto else None,
                decision_reason=AUTO_APPROVED if auto else "",
            ),
            actor,
        )
        _insert(sub, already)
        audit_record(
            actor=actor,
            verb="subscription.requested",
            obj=sub,
            product_id=api.product_id,
            after={
                **_sub_snapshot(sub),
                "justification": sub.justification,
                **({"decision_reason": AUTO_APPROVED} if auto else {}),
            },
        )
        if not auto:
            notifications.enqueue("subscription_requested", sub.pk)
    return sub


def _lock_sub(sub: Subscription) -> Subscription:
    return (
        Subscription.objects.select_for_update(of=("self",))
        .select_related("application", "api", "api__product", "plan")
        .get(pk=sub.pk)
    )


def _decide(
    *,
    actor: User,
    sub: Subscription,
    decision: str,
    reason: str = "",
    notify: bool = True,
) -> Subscription:
    """The one place a subscription's state changes; the caller holds the row lock."""
    current = sub.state
    sources, to, verb = SUBSCRIPTION_TRANSITIONS[decision]
    if current not in sources:
        raise Conflict(
            "invalid_transition",
            f"This subscription is {current}; it cannot be {decision} (only when "
            f"{' or '.join(sources)}).",
            {"state": [f"{current} → {to} is not allowed."]},
        )
    sub.state = to
    sub.decided_by = actor
    sub.decided_at = timezone.now()
    sub.decision_reason = reason
    as_actor(sub, actor).save()
    audit_record(
        actor=actor,
        verb=verb,
        obj=sub,
        product_id=sub.api.product_id,
        before={"state": current},
        after={"state": to, "reason": reason, "plan": sub.plan.slug, "api": sub.api.slug},
    )
    if notify:
        notifications.enqueue(
            "subscription_decided",
            sub.pk,
            {"decision": decision, "reason": reason, "by": actor.get_username()},
        )
    return sub


def _require_decider(actor: User, sub: Subscription, doing: str) -> None:
    if not can_decide(actor, sub.api):
        raise Forbidden(
            "forbidden",
            f"Only the product managers and admins of {sub.api.product.slug}'s team can {doing} "
            "its subscriptions.",
        )


def _require_not_own(actor: User, sub: Subscription, doing: str) -> None:
    if sub.requested_by_id == actor.pk:
        raise Forbidden(
            "own_request", f"You requested this subscription; someone else must {doing} it."
        )


def _reason(reason: str | None, doing: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise _invalid("reason", f"Say why you {doing} it: the developer reads the reason.")
    return reason


def subscription_approve(
    *, actor: User, subscription: Subscription, comment: str = ""
) -> Subscription:
    with transaction.atomic():
        sub = _lock_sub(subscription)
        _require_not_own(actor, sub, "approve")
        _require_decider(actor, sub, "approve")
        return _decide(
            actor=actor,
            sub=sub,
            reason=(comment or "").strip(),
            decision="approved",
        )


def subscription_reject(*, actor: User, subscription: Subscription, reason: str) -> Subscription:
    reason = _reason(reason, "reject")
    with transaction.atomic():
        sub = _lock_sub(subscription)
        _require_not_own(actor, sub, "reject")
        _require_decider(actor, sub, "reject")
        return _decide(
            actor=actor,
            sub=sub,
            reason=reason,
            decision="rejected",
        )


def subscription_suspend(*, actor: User, subscription: Subscription, reason: str) -> Subscription:
    reason = _reason(reason, "suspend")
    with transaction.atomic():
        sub = _lock_sub(subscription)
        _require_decider(actor, sub, "suspend")
        return _decide(
            actor=actor,
            sub=sub,
            reason=reason,
            decision="suspended",
        )


def subscription_resume(*, actor: User, subscription: Subscription) -> Subscription:
    with transaction.atomic():
        sub = _lock_sub(subscription)
        _require_not_own(actor, sub, "resume")
        _require_decider(actor, sub, "resume")
        return _decide(
            actor=actor,
            sub=sub,
            reason="resumed",
            decision="resumed",
        )


def subscription_cancel(*, actor: User, subscription: Subscription) -> Subscription:
    """End a subscription (pending, active or suspended): its owner or an approver."""
    with transaction.atomic():
        sub = _lock_sub(subscription)
        owner = sub.application.owner_id == actor.pk
        if not owner and not can_decide(actor, sub.api):
            raise Forbidden(
                "forbidden",
                "Only the application's owner or the API's approvers can cancel a subscription.",
            )
        return _decide(
            actor=actor,
            sub=sub,
            reason="cancelled by the owner" if owner else "cancelled by the API's team",
            decision="cancelled",
            notify=not owner,
        )


# --- API keys --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NewKey:
    key: APIKey
    secret: str  # shown once; never stored, logged or audited


def _key_snapshot(key: APIKey) -> dict:
    return {
        "application": str(key.application_id),
        "name": key.name,
        "prefix": key.prefix,
        "expires_at": key.expires_at,
    }


def _expiry(expires_at: datetime | None) -> datetime:
    now = timezone.now()
    if expires_at is None:
        return now + timedelta(days=settings.PORTAL_KEY_DEFAULT_DAYS)
    _future(expires_at, "expires_at", "The expiry")
    limit = now + timedelta(days=settings.PORTAL_KEY_MAX_DAYS)
    if expires_at > limit:
        raise _invalid(
            "expires_at",
            f"A key expires at most {settings.PORTAL_KEY_MAX_DAYS} days from now "
            f"(by {limit:%Y-%m-%d}).",
        )
    return expires_at


def _new_key(*, actor: User, application: Application, name: str, expires_at: datetime, **extra):
    secret, prefix = key_generate()
    key = as_actor(
        APIKey(
            application=application,
            name=name,
            prefix=prefix,
            key_hash=key_hash(secret),
            expires_at=expires_at,
            created_by=actor,
            **extra,
        ),
        actor,
    )
    key.save(force_insert=True)
    return key, secret


def key_create(
    *, actor: User, application: Application, name: str, expires_at: datetime | None = None
) -> NewKey:
    """A new key for ``application``; its secret is in the result only (shown once)."""
    _require_owner(actor, application, "create its keys")
    name = (name or "").strip()
    if not name:
        raise _invalid("name", "A key needs a name (to tell your keys apart).")
    if len(name) > 100:
        raise _invalid("name", "A key's name has at most 100 characters.")
    expires_at = _expiry(expires_at)
    with transaction.atomic():
        key, secret = _new_key(
            actor=actor, application=application, name=name, expires_at=expires_at
        )
        audit_record(actor=actor, verb="key.created", obj=key, after=_key_snapshot(key))
    return NewKey(key=key, secret=secret)


def _lock_key(key: APIKey) -> APIKey:
    return (
        APIKey.objects.select_for_update(of=("self",)).select_related("application").get(pk=key.pk)
    )


def key_rotate(*, actor: User, key: APIKey, grace_hours: float | None = None) -> NewKey:
    """A new key (same application and name, a new default expiry) replacing ``key``, which
    keeps working for ``grace_hours`` (default ``PORTAL_KEY_ROTATION_GRACE_HOURS``)."""
    if grace_hours is None:
        grace_hours = settings.PORTAL_KEY_ROTATION_GRACE_HOURS
    if isinstance(grace_hours, bool) or not 0 <= float(grace_hours) <= MAX_GRACE_HOURS:
        raise _invalid("grace_hours", f"The grace period is from 0 to {MAX_GRACE_HOURS} hours.")
    with transaction.atomic():
        old = _lock_key(key)
        _require_owner(actor, old.application, "rotate its keys")
        now = timezone.now()
        if old.revoked_at is not None:
            raise Conflict("already_revoked", "This key is revoked; create a new key instead.")
        if old.expires_at <= now:
            raise Conflict("expired", "This key has expired; create a new key instead.")
        if old.grace_ends_at is not None or APIKey.objects.filter(rotated_from=old).exists():
            raise Conflict(
                "already_rotated", "This key was already rotated; rotate its successor instead."
            )
        old.grace_ends_at = now + timedelta(hours=float(grace_hours))
        as_actor(old, actor).save(update_fields=["grace_ends_at", "updated_at"])
        new, secret = _new_key(
            actor=actor,
            application=old.application,
            name=old.name,
            expires_at=_expiry(None),
            rotated_from=old,
        )
        audit_record(
            actor=actor,
            verb="key.rotated",
            obj=old,
            before={"grace_ends_at": None},
            after={
                "grace_ends_at": old.grace_ends_at,
                "prefix": old.prefix,
                "new_key": str(new.pk),
                "new_prefix": new.prefix,
                "new_expires_at": new.expires_at,
            },
        )
    return NewKey(key=new, secret=secret)


def key_revoke(*, actor: User, key: APIKey) -> APIKey:
    """Stop a key at once (its owner, or a superuser)."""
    with transaction.atomic():
        key = _lock_key(key)
        _require_owner(actor, key.application, "revoke its keys")
        if key.revoked_at is not None:
            raise Conflict("already_revoked", "This key is already revoked.")
        key.revoked_at = timezone.now()
        key.revoked_by = actor
        as_actor(key, actor).save(update_fields=["revoked_at", "revoked_by", "updated_at"])
        audit_record(
            actor=actor,
            verb="key.revoked",
            obj=key,
            before={"revoked_at": None},
            after={"revoked_at": key.revoked_at, "prefix": key.prefix},
        )
    return key

"""Writes for users, teams, memberships and personal access tokens."""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.core.exceptions import ApplicationError, Forbidden
from apps.core.hashing import sha256_hex
from apps.core.history import as_actor

from .models import Membership, PersonalAccessToken, Team, User
from .roles import AUDITOR, AUDITORS_GROUP, ROLES, group_name

TOKEN_PREFIX = "plm"  # noqa: S105 (a public prefix, not a secret)

# Models whose rows auditors may read everywhere (model-level view permission).
AUDITOR_VIEW_MODELS = (
    "catalog.product",
    "catalog.model",
    "catalog.modelversion",
    "catalog.dataset",
    "catalog.datasetversion",
    "catalog.prompttemplate",
    "catalog.prompttemplateversion",
)


def _require_admin(actor: User | None) -> None:
    if actor is not None and not (actor.is_superuser or actor.has_role("admin")):
        raise Forbidden("forbidden", "Only an admin can manage teams and memberships.")


def user_create(
    *, actor: User | None, username: str, password: str, email: str = "", **extra
) -> User:
    _require_admin(actor)
    with transaction.atomic():
        user = as_actor(User(username=username, email=email, **extra), actor)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save()
        audit_record(actor=actor, verb="user.created", obj=user, after={"username": username})
    return user


def team_create(*, actor: User | None, slug: str, name: str, description: str = "") -> Team:
    _require_admin(actor)
    with transaction.atomic():
        team = as_actor(Team(slug=slug, name=name, description=description), actor)
        team.full_clean()
        team.save()
        for role in ROLES:
            Group.objects.get_or_create(name=group_name(slug, role))
        audit_record(actor=actor, verb="team.created", obj=team, after={"slug": slug, "name": name})
    return team


def _auditors_group() -> Group:
    group, created = Group.objects.get_or_create(name=AUDITORS_GROUP)
    if created or not group.permissions.exists():
        perms = []
        for label in AUDITOR_VIEW_MODELS:
            app_label, model = label.split(".")
            perms.extend(
                Permission.objects.filter(
                    content_type__app_label=app_label, codename=f"view_{model}"
                )
            )
        group.permissions.set(perms)
    return group


def membership_add(*, actor: User | None, user: User, team: Team, role: str) -> Membership:
    """Give ``user`` a role in ``team``: the role's verbs on the team's objects."""
    _require_admin(actor)
    if role not in ROLES:
        raise ApplicationError(
            "invalid_role", f"Unknown role {role!r}; one of {', '.join(ROLES)}.", {"role": [role]}
        )
    with transaction.atomic():
        existing = Membership.objects.filter(user=user, team=team, role=role).first()
        if existing:
            return existing
        group, _ = Group.objects.get_or_create(name=group_name(team.slug, role))
        membership = as_actor(Membership(user=user, team=team, role=role, group=group), actor)
        membership.save()
        user.groups.add(group)
        if role == AUDITOR:
            user.groups.add(_auditors_group())
        user.__dict__.pop("_role_cache", None)
        audit_record(
            actor=actor,
            verb="permission.granted",
            obj=membership,
            after={"user": user.username, "team": team.slug, "role": role},
        )
    return membership


def membership_remove(*, actor: User | None, membership: Membership) -> None:
    _require_admin(actor)
    with transaction.atomic():
        user, team, role = membership.user, membership.team, membership.role
        user.groups.remove(membership.group)
        if (
            role == AUDITOR
            and not user.memberships.filter(role=AUDITOR).exclude(pk=membership.pk).exists()
        ):
            user.groups.remove(_auditors_group())
        audit_record(
            actor=actor,
            verb="permission.removed",
            obj=membership,
            before={"user": user.username, "team": team.slug, "role": role},
        )
        as_actor(membership, actor).delete()


@dataclass(frozen=True)
class NewToken:
    token: PersonalAccessToken
    key: str  # the secret, shown once


def _hash_token(key: str) -> str:
    return sha256_hex(key)


def token_create(
    *,
    actor: User,
    user: User,
    name: str,
    expires_at: datetime | None = None,
    days: int | None = None,
) -> NewToken:
    """Create a personal access token. The secret is returned once and never stored."""
    if actor.pk != user.pk and not actor.is_superuser:
        raise Forbidden("forbidden", "You can only create tokens for yourself.")
    name = (name or "").strip()
    if not name:
        raise ApplicationError("invalid", "A token needs a name.", {"name": ["Required."]})
    now = timezone.now()
    if expires_at is None:
        expires_at = now + timedelta(days=days or settings.PERSONAL_TOKEN_DEFAULT_DAYS)
    if expires_at <= now:
        raise ApplicationError(
            "invalid", "The expiry must be in the future.", {"expires_at": ["In the past."]}
        )
    prefix = secrets.token_hex(4)
    key = f"{TOKEN_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    with transaction.atomic():
        token = as_actor(
            PersonalAccessToken(
                user=user,
                name=name,
                prefix=prefix,
                token_hash=_hash_token(key),
                expires_at=expires_at,
            ),
            actor,
        )
        token.save()
        audit_record(
            actor=actor,
            verb="token.created",
            obj=token,
            after={"user": user.username, "name": name, "prefix": prefix, "expires_at": expires_at},
        )
    return NewToken(token=token, key=key)


def token_revoke(*, actor: User, token: PersonalAccessToken) -> PersonalAccessToken:
    with transaction.atomic():
        token = PersonalAccessToken.objects.select_for_update().get(pk=token.pk)
        if token.user_id != actor.pk and not actor.is_superuser:
            raise Forbidden("forbidden", "You can only revoke your own tokens.")
        if token.revoked_at:
            raise ApplicationError("already_revoked", "This token is already revoked.", status=409)
        token.revoked_at = timezone.now()
        as_actor(token, actor).save(update_fields=["revoked_at", "updated_at"])
        audit_record(
            actor=actor,
            verb="token.revoked",
            obj=token,
            before={"revoked_at": None},
            after={"revoked_at": token.revoked_at},
        )
    return token


def token_authenticate(*, key: str) -> PersonalAccessToken | None:
    """The active token for ``key``, or None. One indexed lookup by sha256."""
    if not key.startswith(f"{TOKEN_PREFIX}_"):
        return None
    token = (
        PersonalAccessToken.objects.select_related("user")
        .filter(token_hash=_hash_token(key))
        .first()
    )
    if token is None or not token.is_active or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > timedelta(minutes=1):
        PersonalAccessToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token


def login_recorded(*, user: User, ip_address: str) -> None:
    with transaction.atomic():
        audit_record(actor=user, verb="login.succeeded", obj=user, ip_address=ip_address)


def login_failed_recorded(*, username: str, ip_address: str) -> None:
    with transaction.atomic():
        audit_record(
            actor=None,
            verb="login.failed",
            object_type="accounts.user",
            object_id="",
            object_repr=username[:150],
            after={"username": username[:150]},
            ip_address=ip_address,
        )


def lockout_recorded(*, username: str, ip_address: str) -> None:
    with transaction.atomic():
        audit_record(
            actor=None,
            verb="login.locked_out",
            object_type="accounts.user",
            object_repr=username[:150],
            after={"username": username[:150]},
            ip_address=ip_address,
        )


# --- signatures ------------------------------------------------------------------------------


def signature_check(
    *, actor: User, password: str, obj: Any, product_id: Any = None, what: str = ""
) -> None:
    """A signature: the signer's password in the same request. Failures are audited
    (``signature.failed`` on ``obj``), and past AXES_FAILURE_LIMIT of them within the cool-off
    time the user may not sign at all, so a stolen session cannot guess on."""
    from apps.audit.models import AuditEvent

    since = timezone.now() - timedelta(hours=settings.AXES_COOLOFF_TIME)
    failures = AuditEvent.objects.filter(
        actor_id=actor.pk, verb="signature.failed", at__gte=since
    ).count()
    if failures >= settings.AXES_FAILURE_LIMIT:
        raise Forbidden(
            "signature_locked",
            "Too many wrong passwords: signing is locked for a while. Try again later.",
        )
    if password and actor.check_password(password):
        return
    with transaction.atomic():
        audit_record(actor=actor, verb="signature.failed", obj=obj, product_id=product_id)
    raise Forbidden(
        "bad_signature",
        f"Your password did not match: {what or 'decisions are signed with it'}.",
        {"password": ["Incorrect password."]},
    )

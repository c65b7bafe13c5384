"""Every write to providers, their secrets and their prices. Admins only.

Each service is one transaction that checks the actor is an admin (a superuser, or an admin of
any team), writes, keeps history and appends one audit event. A secret is passed in clear,
encrypted here, and never recorded: the audit event says only ``"set"`` or ``"changed"``.
"""

from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from apps.accounts.models import User
from apps.accounts.roles import ADMIN
from apps.audit.services import audit_changes, audit_record
from apps.core.exceptions import ApplicationError, Conflict, Forbidden
from apps.core.history import as_actor

from . import secrets
from .models import Provider, ProviderKind, ProviderPrice

# What an audit event says of a secret: whether it is set, never its value.
SECRET_SET, SECRET_UNSET, SECRET_CHANGED = "set", "unset", "changed"

PROVIDER_FIELDS = (
    "slug",
    "name",
    "kind",
    "base_url",
    "timeout_seconds",
    "max_retries",
    "config",
    "enabled",
)
_UNSET: Any = object()


def is_gateway_admin(user: User) -> bool:
    return bool(getattr(user, "is_superuser", False) or user.has_role(ADMIN))


def _require_admin(actor: User | None) -> None:
    if actor is not None and is_gateway_admin(actor):
        return
    raise Forbidden("forbidden", "Only an admin can manage providers, their secrets and prices.")


def _snapshot(provider: Provider) -> dict[str, Any]:
    out = {name: getattr(provider, name) for name in PROVIDER_FIELDS}
    out["secret"] = SECRET_SET if provider.secret_set else SECRET_UNSET
    return out


def _check_secret(secret: str) -> str:
    if "\x00" in secret:
        raise ApplicationError(
            "invalid", "The secret cannot contain NUL.", {"secret": ["Contains NUL."]}
        )
    return secret


def provider_create(
    *,
    actor: User,
    slug: str,
    name: str,
    kind: str,
    base_url: str = "",
    timeout_seconds: int = 30,
    max_retries: int = 2,
    config: dict | None = None,
    enabled: bool = True,
    secret: str | None = None,
) -> Provider:
    _require_admin(actor)
    if kind not in ProviderKind.values:
        raise ApplicationError(
            "invalid",
            f"Unknown provider kind {kind!r}.",
            {"kind": [f"One of {ProviderKind.values}."]},
        )
    provider = Provider(
        slug=slug,
        name=name,
        kind=kind,
        base_url=base_url,
        timeout_seconds=timeout_seconds,
        max_retries=max_retries,
        config=config or {},
        enabled=enabled,
        created_by=actor,
        secret_encrypted=secrets.encrypt(_check_secret(secret)) if secret else "",
    )
    with transaction.atomic():
        provider.full_clean()
        try:
            with transaction.atomic():
                as_actor(provider, actor).save(force_insert=True)
        except IntegrityError:
            raise Conflict(
                "duplicate",
                "A provider with this slug already exists.",
                {"slug": ["Already used."]},
            ) from None
        audit_record(actor=actor, verb="provider.created", obj=provider, after=_snapshot(provider))
    return provider


def provider_update(
    *,
    actor: User,
    provider: Provider,
    name: str | None = None,
    kind: str | None = None,
    base_url: str | None = None,
    timeout_seconds: int | None = None,
    max_retries: int | None = None,
    config: dict | None = None,
    enabled: bool | None = None,
    secret: str | None = None,
) -> Provider:
    """Change a provider; ``secret`` (when given and not empty) sets or replaces its secret."""
    _require_admin(actor)
    with transaction.atomic():
        provider = Provider.objects.select_for_update().get(pk=provider.pk)
        before = _snapshot(provider)
        changes = {
            "name": name,
            "kind": kind,
            "base_url": base_url,
            "timeout_seconds": timeout_seconds,
            "max_retries": max_retries,
            "config": config,
            "enabled": enabled,
        }
        for field, value in changes.items():
            if value is not None:
                setattr(provider, field, value)
        after = _snapshot(provider)
        if secret:
            provider.secret_encrypted = secrets.encrypt(_check_secret(secret))
            after["secret"] = SECRET_CHANGED if before["secret"] == SECRET_SET else SECRET_SET
        if before == after:
            return provider
        provider.full_clean()
        as_actor(provider, actor).save()
        audit_changes(
            actor=actor, verb="provider.updated", obj=provider, before=before, after=after
        )
    return provider


def provider_secret(provider: Provider) -> str:
    """The clear secret, for the call pipeline only (empty when none is set). Never log it."""
    return secrets.decrypt(provider.secret_encrypted) if provider.secret_encrypted else ""


def provider_price_set(
    *,
    actor: User,
    provider: Provider,
    provider_model: str,
    input_per_million: Decimal,
    output_per_million: Decimal,
) -> ProviderPrice:
    """Set (create or replace) the price of one of ``provider``'s models."""
    _require_admin(actor)
    with transaction.atomic():
        provider = Provider.objects.select_for_update().get(pk=provider.pk)
        price = ProviderPrice.objects.filter(
            provider=provider, provider_model=provider_model
        ).first()
        before = None
        if price is None:
            price = ProviderPrice(provider=provider, provider_model=provider_model)
        else:
            before = {
                "input_per_million": price.input_per_million,
                "output_per_million": price.output_per_million,
            }
        price.provider = provider
        price.input_per_million = Decimal(input_per_million)
        price.output_per_million = Decimal(output_per_million)
        price.full_clean()
        after = {
            "provider": provider.slug,
            "provider_model": provider_model,
            "input_per_million": price.input_per_million,
            "output_per_million": price.output_per_million,
        }
        if before is not None and all(before[key] == after[key] for key in before):
            return price
        as_actor(price, actor).save()
        audit_record(actor=actor, verb="provider_price.set", obj=price, before=before, after=after)
    return price


def provider_secrets_rotate(*, actor: User | None = None) -> int:
    """Re-encrypt every provider secret under the newest key; returns how many were rotated.

    The clear text does not change, so no history row is written (the secret is not in history
    anyway); one audit event records the count.
    """
    with transaction.atomic():
        rotated = 0
        for provider in Provider.objects.select_for_update().exclude(secret_encrypted=""):
            provider.secret_encrypted = secrets.rotate(provider.secret_encrypted)
            provider.skip_history_when_saving = True
            provider.save(update_fields=["secret_encrypted"])
            rotated += 1
        audit_record(
            actor=actor,
            verb="provider.secrets_rotated",
            object_type=Provider._meta.label_lower,
            object_id="",
            object_repr="all providers",
            after={"rotated": rotated, "keys": len(secrets.keys())},
        )
    return rotated

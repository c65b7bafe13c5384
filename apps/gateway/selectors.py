"""Reads with rules: who sees which providers.

Admins and auditors see every provider; every other signed-in user sees the enabled ones (a
disabled provider is then a 404). No read ever returns a secret: only whether one is set.
"""

from django.db.models import QuerySet

from apps.accounts.models import User
from apps.accounts.roles import ADMIN, AUDITOR

from .models import Provider, ProviderPrice


def sees_all_providers(user: User) -> bool:
    return bool(user.is_superuser or user.has_role(ADMIN, AUDITOR))


def provider_list_for(*, user: User) -> QuerySet[Provider]:
    qs = Provider.objects.select_related("created_by").order_by("slug")
    if sees_all_providers(user):
        return qs
    return qs.filter(enabled=True)


def provider_price_list_for(*, user: User, provider: Provider) -> QuerySet[ProviderPrice]:
    """The prices of a provider ``user`` may see (call with one from ``provider_list_for``)."""
    return (
        ProviderPrice.objects.filter(provider=provider)
        .select_related("provider")
        .order_by("provider_model")
    )

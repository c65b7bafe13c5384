"""Reads of incidents, scoped to the products a user may see (out of scope is a 404)."""

from django.db.models import QuerySet

from apps.accounts.models import User
from apps.accounts.roles import AUDITOR
from apps.catalog.models import Product
from apps.catalog.selectors import product_list_for
from apps.releases.models import Release

from .models import Incident


def _incidents() -> QuerySet[Incident]:
    return Incident.objects.select_related("product", "product__owner_team", "release", "filed_by")


def incident_list_for(*, user: User) -> QuerySet[Incident]:
    """The incidents of every product ``user`` may see (their teams; auditors: all)."""
    qs = _incidents()
    if user.is_superuser or user.has_perm("catalog.view_product"):
        return qs
    return qs.filter(product__in=product_list_for(user=user).values("pk"))


def incident_list_for_release(release: Release) -> QuerySet[Incident]:
    """Every incident filed against ``release`` (for its dossier), oldest first."""
    return _incidents().filter(release=release).order_by("occurred_at", "created_at")


def incident_list_for_product(*, product: Product) -> QuerySet[Incident]:
    return _incidents().filter(product=product)


def can_file_incident(user: User, product: Product) -> bool:
    """Any member of the product's owner team but an auditor-only one (auditors only read);
    superusers too."""
    if not getattr(user, "is_authenticated", False):
        return False
    if user.is_superuser:
        return True
    return bool(user.roles(product.owner_team) - {AUDITOR})

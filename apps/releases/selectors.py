"""Reads of releases, scoped to the products a user may see."""

from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet

from apps.accounts.models import User
from apps.catalog.models import Product
from apps.catalog.selectors import product_list_for

from .models import Release, ReleaseDataset


def release_list_for(*, user: User) -> QuerySet[Release]:
    qs = Release.objects.select_related(
        "product",
        "product__owner_team",
        "prompt_version",
        "prompt_version__prompt",
        "model_version",
        "model_version__model",
        "created_by",
    ).prefetch_related(
        Prefetch(
            "dataset_links",
            queryset=ReleaseDataset.objects.select_related(
                "dataset_version", "dataset_version__dataset"
            ),
        )
    )
    if user.is_superuser or user.has_perm("catalog.view_product"):
        return qs
    return qs.filter(product__in=product_list_for(user=user).values("pk"))


def release_live_at(*, product: Product, at: datetime) -> Release | None:
    """The release that was live for ``product`` at instant ``at`` (one indexed query)."""
    return (
        Release.objects.filter(product=product, effective_from__lte=at)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=at))
        .order_by("-effective_from")
        .first()
    )


def release_current(*, product: Product) -> Release | None:
    return Release.objects.filter(product=product, status="released").first()

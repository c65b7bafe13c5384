"""Reads with rules: every list is scoped to what the user may see (out of scope is a 404).

Scope is django-guardian's: object permissions granted to the user or their groups (one group
per team role), or the model-level view permission (auditors, superusers) for everything.
"""

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from guardian.utils import get_group_obj_perms_model, get_user_obj_perms_model

from apps.accounts.models import User

from .models import (
    Dataset,
    DatasetVersion,
    Model,
    ModelVersion,
    ModelVersionDataset,
    Product,
    PromptTemplate,
    PromptTemplateVersion,
)


def _scope_exists(user: User, klass, ref: str) -> Q:
    """guardian's object check as a correlated EXISTS on the direct-FK permission tables.

    ``ref`` names the column holding the guarded object's id (``pk`` for the object itself,
    the parent's foreign key for versions). The database answers it with index lookups for the
    rows a page shows, however many objects and grants there are.
    """
    codename = f"view_{klass._meta.model_name}"
    via_group = get_group_obj_perms_model(klass).objects.filter(
        content_object=OuterRef(ref), group__user=user, permission__codename=codename
    )
    via_user = get_user_obj_perms_model(klass).objects.filter(
        content_object=OuterRef(ref), user=user, permission__codename=codename
    )
    return Q(Exists(via_group)) | Q(Exists(via_user))


def _sees_all(user: User, klass) -> bool:
    meta = klass._meta
    return user.is_superuser or user.has_perm(f"{meta.app_label}.view_{meta.model_name}")


def _visible(user: User, klass, queryset: QuerySet | None = None) -> QuerySet:
    qs = queryset if queryset is not None else klass.objects.all()
    if _sees_all(user, klass):
        return qs
    return qs.filter(_scope_exists(user, klass, "pk"))


def product_list_for(*, user: User) -> QuerySet[Product]:
    return _visible(user, Product, Product.objects.select_related("owner_team", "created_by"))


def artifact_list_for(*, user: User, kind: type) -> QuerySet:
    """The artifacts ``user`` may see, with their version count and latest version number.

    The two figures are correlated subqueries, not a join with GROUP BY: the scope and the
    pagination count then stay index lookups however many versions there are.
    """
    version_model = kind.versions.rel.related_model
    parent = kind.versions.field.name
    versions = version_model.objects.filter(**{parent: OuterRef("pk")}).order_by()
    qs = (
        kind.objects.select_related("owner_team", "created_by")
        .annotate(
            version_count=Coalesce(
                Subquery(versions.values(parent).annotate(n=Count("pk")).values("n")[:1]),
                0,
            ),
            latest_version=Subquery(versions.order_by("-version").values("version")[:1]),
        )
        .order_by("slug", "pk")
    )
    return _visible(user, kind, qs)


def model_list_for(*, user: User) -> QuerySet[Model]:
    return artifact_list_for(user=user, kind=Model)


def dataset_list_for(*, user: User) -> QuerySet[Dataset]:
    return artifact_list_for(user=user, kind=Dataset)


def prompt_list_for(*, user: User) -> QuerySet[PromptTemplate]:
    return artifact_list_for(user=user, kind=PromptTemplate)


def _version_scope(user: User, version_model, parent_model, parent_field: str) -> QuerySet:
    """Versions whose artifact ``user`` may view."""
    qs = version_model.objects.select_related(
        f"{parent_field}", f"{parent_field}__owner_team", "created_by", "deprecated_by"
    )
    if _sees_all(user, parent_model):
        return qs
    return qs.filter(_scope_exists(user, parent_model, parent_field))


def prompt_version_list_for(*, user: User) -> QuerySet[PromptTemplateVersion]:
    return _version_scope(user, PromptTemplateVersion, PromptTemplate, "prompt")


def dataset_version_list_for(*, user: User) -> QuerySet[DatasetVersion]:
    return _version_scope(user, DatasetVersion, Dataset, "dataset").select_related("parent")


def model_version_list_for(*, user: User) -> QuerySet[ModelVersion]:
    return (
        _version_scope(user, ModelVersion, Model, "model")
        .select_related("base_version", "base_version__model")
        .prefetch_related(
            Prefetch(
                "lineage",
                queryset=ModelVersionDataset.objects.select_related(
                    "dataset_version", "dataset_version__dataset"
                ),
            )
        )
    )


def product_artifacts(*, user: User, product: Product) -> dict[str, QuerySet]:
    """The team's artifacts shown on a product page (artifacts are shared by a team's products)."""
    team = product.owner_team_id
    return {
        "models": model_list_for(user=user).filter(owner_team_id=team),
        "datasets": dataset_list_for(user=user).filter(owner_team_id=team),
        "prompts": prompt_list_for(user=user).filter(owner_team_id=team),
    }

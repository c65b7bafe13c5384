"""Reads of releases, scoped to the products a user may see."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Prefetch, Q, QuerySet

from apps.accounts.models import Team, User
from apps.catalog.models import ModelVersion, Product, PromptTemplateVersion
from apps.catalog.selectors import (
    model_version_list_for,
    product_list_for,
    prompt_version_list_for,
)
from apps.core.exceptions import ApplicationError, NotFound

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


@dataclass(frozen=True)
class RunTarget:
    """What a playground run, batch or evaluation runs, as the actor may see it, and the team
    whose scope and money it is: a release, or a prompt version with a model version."""

    team: Team
    product: Product | None
    release: Release | None
    prompt_version: PromptTemplateVersion
    model_version: ModelVersion

    @property
    def schema(self) -> dict:
        return self.prompt_version.variables_schema or {}

    def fields(self) -> dict:
        return {
            "team": self.team,
            "product": self.product,
            "release": self.release,
            "prompt_version": self.prompt_version,
            "model_version": self.model_version,
        }


def run_target_for(
    *,
    actor: User,
    release: Release | None = None,
    prompt_version: PromptTemplateVersion | None = None,
    model_version: ModelVersion | None = None,
) -> RunTarget:
    """The target the actor picked, looked up in their scope (an unseen one is a 404)."""
    if release is not None:
        if prompt_version is not None or model_version is not None:
            raise ApplicationError(
                "invalid",
                "Pick a release, or a prompt version and a model version, not both.",
                {"release": ["Give either a release or a prompt version and a model version."]},
            )
        found = (
            release_list_for(user=actor)
            .prefetch_related(None)
            .select_related("product__owner_team")
            .filter(pk=release.pk)
            .first()
        )
        if found is None:
            raise NotFound("not_found", "No such release, or it is outside your teams.")
        return RunTarget(
            team=found.product.owner_team,
            product=found.product,
            release=found,
            prompt_version=found.prompt_version,
            model_version=found.model_version,
        )
    missing = {
        name: ["Required without a release."]
        for name, value in (("prompt_version", prompt_version), ("model_version", model_version))
        if value is None
    }
    if missing:
        raise ApplicationError(
            "invalid",
            "Pick a release, or a prompt version and a model version.",
            {"release": ["Give a release, or a prompt version and a model version."], **missing},
        )
    pv = prompt_version_list_for(user=actor).filter(pk=prompt_version.pk).first()
    if pv is None:
        raise NotFound("not_found", "No such prompt version, or it is outside your teams.")
    mv = model_version_list_for(user=actor).prefetch_related(None).filter(pk=model_version.pk)
    mv = mv.first()
    if mv is None:
        raise NotFound("not_found", "No such model version, or it is outside your teams.")
    return RunTarget(
        team=pv.prompt.owner_team, product=None, release=None, prompt_version=pv, model_version=mv
    )

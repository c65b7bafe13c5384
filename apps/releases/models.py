"""Releases: a product's bill of materials (an "LLM-BOM") under a semantic version.

A release names one prompt template version, one model version, dataset versions and gateway
settings; its ``fingerprint`` is sha256 over the content hashes of those versions and the
settings. Only a draft that was never submitted for review can be edited. A product has at most
one released release; effectivity (from, to) answers "which release was live at t" in one query.
"""

from django.conf import settings as django_settings
from django.db import models
from django.db.models import Q

from apps.catalog.models import DatasetVersion, ModelVersion, Product, PromptTemplateVersion
from apps.core.history import history
from apps.core.models import BaseModel


class ReleaseStatus(models.TextChoices):
    DRAFT = "draft"
    CANDIDATE = "candidate"
    RELEASED = "released"
    DEPRECATED = "deprecated"
    RETIRED = "retired"


# The one table of allowed status moves.
RELEASE_TRANSITIONS: dict[str, tuple[str, ...]] = {
    ReleaseStatus.DRAFT: (ReleaseStatus.CANDIDATE, ReleaseStatus.RETIRED),
    ReleaseStatus.CANDIDATE: (ReleaseStatus.RELEASED, ReleaseStatus.RETIRED),
    ReleaseStatus.RELEASED: (ReleaseStatus.DEPRECATED,),
    ReleaseStatus.DEPRECATED: (ReleaseStatus.RETIRED,),
    ReleaseStatus.RETIRED: (),
}


class Release(BaseModel):
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="releases")
    version = models.CharField(max_length=64, help_text="Semantic version, e.g. 1.4.0")
    prompt_version = models.ForeignKey(
        PromptTemplateVersion, on_delete=models.PROTECT, related_name="releases"
    )
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="releases"
    )
    dataset_versions = models.ManyToManyField(
        DatasetVersion, through="ReleaseDataset", related_name="releases", blank=True
    )
    settings = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)
    status = models.CharField(
        max_length=16, choices=ReleaseStatus.choices, default=ReleaseStatus.DRAFT
    )
    fingerprint = models.CharField(max_length=64, db_index=True)
    frozen_at = models.DateTimeField(
        null=True, blank=True, help_text="When it was first submitted for review."
    )
    effective_from = models.DateTimeField(null=True, blank=True)
    effective_to = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    history = history()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["product", "version"], name="release_unique_version"),
            models.UniqueConstraint(
                fields=["product"],
                condition=Q(status="released"),
                name="release_one_released_per_product",
            ),
        ]
        indexes = [
            models.Index(fields=["product", "effective_from"]),
            models.Index(fields=["product", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.product.slug}@{self.version}"

    @property
    def is_editable(self) -> bool:
        return self.status == ReleaseStatus.DRAFT and self.frozen_at is None


class ReleaseDataset(BaseModel):
    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="dataset_links")
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="release_links"
    )

    history = history()

    class Meta:
        ordering = ["dataset_version__dataset__slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["release", "dataset_version"], name="release_dataset_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.release_id}:{self.dataset_version_id}"

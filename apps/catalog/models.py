"""Products and the versioned artifacts they are built from.

An artifact (model, dataset, prompt template) is an identity owned by a team; its versions are
immutable once created and carry a ``content_hash``: sha256 over the canonical JSON of their
content. A version that anything references can be deprecated but never deleted.
"""

from django.conf import settings
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

from apps.accounts.models import Team
from apps.core.exceptions import ApplicationError
from apps.core.history import history
from apps.core.models import BaseModel


class Stage(models.TextChoices):
    CONCEPT = "concept"
    DESIGN = "design"
    DEVELOPMENT = "development"
    VALIDATION = "validation"
    PRODUCTION = "production"
    DEPRECATED = "deprecated"
    RETIRED = "retired"


# The one table of allowed lifecycle moves: forward one stage, or back from a failed review.
STAGE_TRANSITIONS: dict[str, tuple[str, ...]] = {
    Stage.CONCEPT: (Stage.DESIGN, Stage.RETIRED),
    Stage.DESIGN: (Stage.DEVELOPMENT, Stage.CONCEPT, Stage.RETIRED),
    Stage.DEVELOPMENT: (Stage.VALIDATION, Stage.DESIGN, Stage.RETIRED),
    Stage.VALIDATION: (Stage.PRODUCTION, Stage.DEVELOPMENT, Stage.RETIRED),
    Stage.PRODUCTION: (Stage.DEPRECATED,),
    Stage.DEPRECATED: (Stage.RETIRED, Stage.PRODUCTION),
    Stage.RETIRED: (),
}


class RiskClass(models.TextChoices):
    MINIMAL = "minimal"
    LIMITED = "limited"
    HIGH = "high"


class PIIClass(models.TextChoices):
    NONE = "none"
    PSEUDONYMISED = "pseudonymised"
    PERSONAL = "personal"
    SENSITIVE = "sensitive"


class DatasetFormat(models.TextChoices):
    JSONL = "jsonl"
    CSV = "csv"
    OTHER = "other"


class Product(BaseModel):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=150)
    owner_team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="products")
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.CONCEPT)
    risk_class = models.CharField(
        max_length=16, choices=RiskClass.choices, default=RiskClass.MINIMAL
    )
    intended_use = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    history = history()

    class Meta:
        ordering = ["slug"]
        indexes = [models.Index(fields=["owner_team", "stage"])]

    def __str__(self) -> str:
        return self.slug


class Artifact(BaseModel):
    """An identity shared by the products of a team; its content lives in versions."""

    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=150)
    owner_team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        abstract = True
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug


class Version(BaseModel):
    """An immutable version. Only the deprecation fields may change after creation."""

    PARENT = ""  # name of the foreign key to the artifact
    audit_noun = ""  # the noun of its audit verbs: prompt_version.created...
    OWNED_RELATIONS: tuple[str, ...] = ()  # parts of the version's content, deleted with it
    MUTABLE_FIELDS = frozenset(
        {"deprecated_at", "deprecated_by", "deprecation_reason", "updated_at"}
    )

    version = models.PositiveIntegerField(editable=False)
    content_hash = models.CharField(max_length=64, editable=False, db_index=True)
    changelog = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    deprecated_at = models.DateTimeField(null=True, blank=True)
    deprecated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    deprecation_reason = models.TextField(blank=True)

    class Meta:
        abstract = True
        ordering = ["-version"]

    @property
    def is_deprecated(self) -> bool:
        return self.deprecated_at is not None

    def save(self, *args, **kwargs):
        if not self._state.adding:
            stored = type(self)._base_manager.filter(pk=self.pk).values().first()
            if stored is not None:
                changed = [
                    f.attname
                    for f in self._meta.concrete_fields
                    if f.name not in self.MUTABLE_FIELDS
                    and f.attname not in self.MUTABLE_FIELDS
                    and stored.get(f.attname) != getattr(self, f.attname)
                ]
                if changed:
                    raise ApplicationError(
                        "immutable",
                        f"{self._meta.verbose_name} {self} is immutable: create a new version "
                        f"instead of changing {', '.join(sorted(changed))}.",
                        {name: ["Versions cannot be changed."] for name in changed},
                        status=409,
                    )
        super().save(*args, **kwargs)


class Model(Artifact):
    audit_noun = "model"

    history = history()

    class Meta(Artifact.Meta):
        constraints = [
            models.UniqueConstraint(fields=["owner_team", "slug"], name="model_unique_slug")
        ]


class Dataset(Artifact):
    audit_noun = "dataset"

    history = history()

    class Meta(Artifact.Meta):
        constraints = [
            models.UniqueConstraint(fields=["owner_team", "slug"], name="dataset_unique_slug")
        ]


class PromptTemplate(Artifact):
    audit_noun = "prompt"

    history = history()

    class Meta(Artifact.Meta):
        constraints = [
            models.UniqueConstraint(fields=["owner_team", "slug"], name="prompt_unique_slug")
        ]


def _dataset_upload_to(instance: "DatasetVersion", filename: str) -> str:
    ext = instance.format if instance.format != DatasetFormat.OTHER else "bin"
    return f"datasets/{instance.dataset_id}/{instance.id}.{ext}"


class DatasetVersion(Version):
    PARENT = "dataset"
    audit_noun = "dataset_version"
    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    file = models.FileField(upload_to=_dataset_upload_to, blank=True, max_length=300)
    uri = models.CharField(max_length=500, blank=True)
    format = models.CharField(
        max_length=8, choices=DatasetFormat.choices, default=DatasetFormat.OTHER
    )
    sha256 = models.CharField(max_length=64, blank=True)
    size_bytes = models.BigIntegerField(null=True, blank=True)
    row_count = models.BigIntegerField(null=True, blank=True)
    schema = models.JSONField(default=dict, blank=True)
    source = models.CharField(max_length=300, blank=True)
    licence = models.CharField(max_length=100, blank=True)
    pii_class = models.CharField(max_length=16, choices=PIIClass.choices, default=PIIClass.NONE)
    retention_until = models.DateField(null=True, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )

    history = history()

    class Meta(Version.Meta):
        constraints = [
            models.UniqueConstraint(fields=["dataset", "version"], name="datasetversion_unique")
        ]
        indexes = [models.Index(fields=["dataset", "-version"])]

    def __str__(self) -> str:
        return f"{self.dataset.slug}@v{self.version}"

    def content(self) -> dict:
        return {
            "kind": "dataset_version",
            "sha256": self.sha256,
            "uri": self.uri,
            "format": self.format,
            "row_count": self.row_count,
            "schema": self.schema,
            "source": self.source,
            "licence": self.licence,
            "pii_class": self.pii_class,
            "retention_until": self.retention_until,
            "parent": self.parent.content_hash if self.parent_id else None,
        }


class ModelVersion(Version):
    PARENT = "model"
    audit_noun = "model_version"
    OWNED_RELATIONS = ("lineage",)
    model = models.ForeignKey(Model, on_delete=models.PROTECT, related_name="versions")
    provider = models.CharField(
        max_length=64, help_text="Slug of the gateway provider that serves this model."
    )
    provider_model = models.CharField(max_length=200)
    parameters = models.JSONField(default=dict, blank=True)
    base_model = models.CharField(max_length=200, blank=True)
    base_version = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="derived"
    )
    model_card = models.JSONField(default=dict, blank=True)

    history = history()

    class Meta(Version.Meta):
        constraints = [
            models.UniqueConstraint(fields=["model", "version"], name="modelversion_unique")
        ]
        indexes = [models.Index(fields=["model", "-version"])]

    def __str__(self) -> str:
        return f"{self.model.slug}@v{self.version}"

    def content(self, lineage: list["ModelVersionDataset"] | None = None) -> dict:
        if lineage is None:
            lineage = list(self.lineage.select_related("dataset_version"))
        return {
            "kind": "model_version",
            "provider": self.provider,
            "provider_model": self.provider_model,
            "parameters": self.parameters,
            "base_model": self.base_model,
            "base_version": self.base_version.content_hash if self.base_version_id else None,
            "datasets": sorted(
                [link.purpose, link.dataset_version.content_hash] for link in lineage
            ),
            "model_card": self.model_card,
        }


class LineagePurpose(models.TextChoices):
    TRAINING = "training"
    FINETUNING = "finetuning"


class ModelVersionDataset(BaseModel):
    """Lineage: a dataset version a model version was trained or fine-tuned on (immutable)."""

    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="lineage"
    )
    dataset_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="used_by_models"
    )
    purpose = models.CharField(max_length=16, choices=LineagePurpose.choices)

    history = history()

    class Meta:
        ordering = ["purpose", "dataset_version__dataset__slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "dataset_version", "purpose"], name="lineage_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model_version_id} {self.purpose} {self.dataset_version_id}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ApplicationError("immutable", "Lineage links cannot be changed.", status=409)
        super().save(*args, **kwargs)


class PromptTemplateVersion(Version):
    PARENT = "prompt"
    audit_noun = "prompt_version"
    prompt = models.ForeignKey(PromptTemplate, on_delete=models.PROTECT, related_name="versions")
    messages = models.JSONField()
    variables_schema = models.JSONField(default=dict, blank=True)
    parameters = models.JSONField(default=dict, blank=True)

    history = history()

    class Meta(Version.Meta):
        constraints = [
            models.UniqueConstraint(fields=["prompt", "version"], name="promptversion_unique")
        ]
        indexes = [models.Index(fields=["prompt", "-version"])]

    def __str__(self) -> str:
        return f"{self.prompt.slug}@v{self.version}"

    def content(self) -> dict:
        return {
            "kind": "prompt_version",
            "messages": self.messages,
            "variables_schema": self.variables_schema,
            "parameters": self.parameters,
        }


# django-guardian object permissions with direct foreign keys (indexed joins, cascade on delete).
class ProductUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Product, on_delete=models.CASCADE)


class ProductGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Product, on_delete=models.CASCADE)


class ModelUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Model, on_delete=models.CASCADE)


class ModelGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Model, on_delete=models.CASCADE)


class DatasetUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(Dataset, on_delete=models.CASCADE)


class DatasetGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Dataset, on_delete=models.CASCADE)


class PromptTemplateUserObjectPermission(UserObjectPermissionBase):
    content_object = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE)


class PromptTemplateGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(PromptTemplate, on_delete=models.CASCADE)

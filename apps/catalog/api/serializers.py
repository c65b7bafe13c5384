"""Shapes of the catalog API. Shapes only: every rule is in ``catalog.services``."""

from rest_framework import serializers

from apps.accounts.models import Team
from apps.core.api import JSONObjectField, ScopedPrimaryKeyRelatedField

from .. import prompting, selectors
from ..models import (
    Dataset,
    DatasetFormat,
    DatasetVersion,
    LineagePurpose,
    Model,
    ModelVersion,
    PIIClass,
    Product,
    PromptTemplate,
    PromptTemplateVersion,
    RiskClass,
    Stage,
)

BIGINT_MAX = 2**63 - 1


def _username_field() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)


class CreateOnlyMixin:
    """Refuse, with a clear message, a change to a field that can only be set on create.

    ``create_only`` maps the field name to a function giving the object's current value; sending
    the current value back (a client echoing a GET) is accepted and ignored.
    """

    create_only: dict = {}

    def validate(self, attrs):
        attrs = super().validate(attrs)
        instance = self.instance
        if instance is None:
            return attrs
        errors = {}
        for name, current in self.create_only.items():
            if str(self.initial_data.get(name, current(instance))) != str(current(instance)):
                errors[name] = [f"{name} is set on create and cannot be changed."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


# --- Products -------------------------------------------------------------------------------


class ProductSerializer(serializers.ModelSerializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=150)
    owner_team = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Team.objects.all(),
        help_text="Slug of the owning team (set on create only).",
    )
    stage = serializers.ChoiceField(choices=Stage.choices, required=False)
    risk_class = serializers.ChoiceField(choices=RiskClass.choices, required=False)
    intended_use = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    created_by = _username_field()

    class Meta:
        model = Product
        fields = [
            "id",
            "slug",
            "name",
            "owner_team",
            "stage",
            "risk_class",
            "intended_use",
            "created_at",
            "updated_at",
            "created_by",
        ]
        read_only_fields = ["id", "created_at", "updated_at", "created_by"]
        validators = []  # uniqueness is checked by the service


class ProductUpdateSerializer(CreateOnlyMixin, serializers.Serializer):
    """PATCH: ``name``, ``risk_class``, ``intended_use``, or ``stage`` (a lifecycle move)."""

    create_only = {
        "slug": lambda product: product.slug,
        "owner_team": lambda product: product.owner_team.slug,
    }

    name = serializers.CharField(max_length=150, required=False)
    stage = serializers.ChoiceField(
        choices=Stage.choices,
        required=False,
        help_text="Moves the product along its lifecycle; change it on its own.",
    )
    risk_class = serializers.ChoiceField(choices=RiskClass.choices, required=False)
    intended_use = serializers.CharField(required=False, allow_blank=True, max_length=20_000)

    def validate(self, attrs):
        attrs = super().validate(attrs)
        product = self.instance
        moves = "stage" in attrs and attrs["stage"] != product.stage
        edits = any(
            name in attrs and attrs[name] != getattr(product, name)
            for name in ("name", "risk_class", "intended_use")
        )
        if moves and edits:
            raise serializers.ValidationError(
                {"stage": ["Change the stage on its own, in a request without other changes."]}
            )
        return attrs


# --- Artifacts ------------------------------------------------------------------------------

ARTIFACT_FIELDS = [
    "id",
    "slug",
    "name",
    "owner_team",
    "description",
    "version_count",
    "latest_version",
    "created_at",
    "updated_at",
    "created_by",
]


class ArtifactSerializer(serializers.ModelSerializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=150)
    owner_team = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Team.objects.all(),
        help_text="Slug of the owning team (set on create only).",
    )
    description = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    version_count = serializers.IntegerField(read_only=True, default=0)
    latest_version = serializers.IntegerField(read_only=True, allow_null=True, default=None)
    created_by = _username_field()

    class Meta:
        fields = ARTIFACT_FIELDS
        read_only_fields = ["id", "created_at", "updated_at", "created_by"]
        validators = []


class ModelArtifactSerializer(ArtifactSerializer):
    class Meta(ArtifactSerializer.Meta):
        model = Model


class DatasetSerializer(ArtifactSerializer):
    class Meta(ArtifactSerializer.Meta):
        model = Dataset


class PromptSerializer(ArtifactSerializer):
    class Meta(ArtifactSerializer.Meta):
        model = PromptTemplate


class ArtifactUpdateSerializer(CreateOnlyMixin, serializers.Serializer):
    create_only = {
        "slug": lambda artifact: artifact.slug,
        "owner_team": lambda artifact: artifact.owner_team.slug,
    }

    name = serializers.CharField(max_length=150, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=20_000)


# --- Versions (immutable) -------------------------------------------------------------------

VERSION_READ_ONLY = [
    "id",
    "version",
    "content_hash",
    "created_by",
    "created_at",
    "deprecated_at",
    "deprecated_by",
    "deprecation_reason",
]


class VersionSerializer(serializers.ModelSerializer):
    changelog = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    created_by = _username_field()
    deprecated_by = _username_field()

    class Meta:
        read_only_fields = VERSION_READ_ONLY
        validators = []


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=list(prompting.ROLES))
    content = serializers.CharField(trim_whitespace=False, max_length=prompting.MAX_CONTENT)


class PromptVersionSerializer(VersionSerializer):
    prompt = ScopedPrimaryKeyRelatedField(model=PromptTemplate, selector=selectors.prompt_list_for)
    messages = serializers.ListField(
        child=MessageSerializer(), min_length=1, max_length=prompting.MAX_MESSAGES
    )
    variables_schema = JSONObjectField(
        required=False, help_text="JSON Schema of the template's variables."
    )
    parameters = JSONObjectField(required=False, help_text="Default model parameters.")

    class Meta(VersionSerializer.Meta):
        model = PromptTemplateVersion
        fields = [
            "id",
            "prompt",
            "version",
            "messages",
            "variables_schema",
            "parameters",
            "changelog",
            "content_hash",
            "created_by",
            "created_at",
            "deprecated_at",
            "deprecated_by",
            "deprecation_reason",
        ]


class LineageField(serializers.ManyRelatedField):
    """Dataset version ids a model version was trained (or fine-tuned) on, from its lineage."""

    def __init__(self, *, purpose: str, **kwargs):
        self.purpose = purpose
        kwargs.setdefault(
            "child_relation",
            ScopedPrimaryKeyRelatedField(
                model=DatasetVersion, selector=selectors.dataset_version_list_for
            ),
        )
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        # Uses the lineage the selector prefetched: no query per row.
        return [
            link.dataset_version for link in instance.lineage.all() if link.purpose == self.purpose
        ]


class ModelVersionSerializer(VersionSerializer):
    model = ScopedPrimaryKeyRelatedField(model=Model, selector=selectors.model_list_for)
    provider = serializers.CharField(
        max_length=64, help_text="Slug of the gateway provider that serves this model."
    )
    provider_model = serializers.CharField(max_length=200)
    parameters = JSONObjectField(required=False)
    base_model = serializers.CharField(required=False, allow_blank=True, max_length=200)
    base_version = ScopedPrimaryKeyRelatedField(
        model=ModelVersion,
        selector=selectors.model_version_list_for,
        required=False,
        allow_null=True,
    )
    training_datasets = LineageField(
        purpose=LineagePurpose.TRAINING, help_text="Dataset version ids it was trained on."
    )
    finetuning_datasets = LineageField(
        purpose=LineagePurpose.FINETUNING, help_text="Dataset version ids it was fine-tuned on."
    )
    model_card = JSONObjectField(required=False)

    class Meta(VersionSerializer.Meta):
        model = ModelVersion
        fields = [
            "id",
            "model",
            "version",
            "provider",
            "provider_model",
            "parameters",
            "base_model",
            "base_version",
            "training_datasets",
            "finetuning_datasets",
            "model_card",
            "changelog",
            "content_hash",
            "created_by",
            "created_at",
            "deprecated_at",
            "deprecated_by",
            "deprecation_reason",
        ]


class DatasetVersionSerializer(VersionSerializer):
    dataset = ScopedPrimaryKeyRelatedField(model=Dataset, selector=selectors.dataset_list_for)
    file = serializers.FileField(
        required=False,
        use_url=False,
        allow_empty_file=False,
        help_text="A JSONL or CSV file (multipart); profiled for sha256, row count and schema.",
    )
    uri = serializers.CharField(
        required=False, allow_blank=True, max_length=500, help_text="Where the data lives."
    )
    format = serializers.ChoiceField(
        choices=DatasetFormat.choices,
        required=False,
        help_text="Inferred from the file name (.jsonl, .csv) when not given.",
    )
    sha256 = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="For a uri-only version; computed from an uploaded file.",
    )
    row_count = serializers.IntegerField(
        required=False, allow_null=True, min_value=0, max_value=BIGINT_MAX
    )
    schema = serializers.DictField(read_only=True)
    source = serializers.CharField(required=False, allow_blank=True, max_length=300)
    licence = serializers.CharField(required=False, allow_blank=True, max_length=100)
    pii_class = serializers.ChoiceField(choices=PIIClass.choices, required=False)
    retention_until = serializers.DateField(required=False, allow_null=True)
    parent = ScopedPrimaryKeyRelatedField(
        model=DatasetVersion,
        selector=selectors.dataset_version_list_for,
        required=False,
        allow_null=True,
    )

    class Meta(VersionSerializer.Meta):
        model = DatasetVersion
        fields = [
            "id",
            "dataset",
            "version",
            "file",
            "uri",
            "format",
            "sha256",
            "row_count",
            "schema",
            "size_bytes",
            "source",
            "licence",
            "pii_class",
            "retention_until",
            "parent",
            "changelog",
            "content_hash",
            "created_by",
            "created_at",
            "deprecated_at",
            "deprecated_by",
            "deprecation_reason",
        ]
        read_only_fields = [*VERSION_READ_ONLY, "size_bytes"]


# --- Actions ---------------------------------------------------------------------------------


class DeprecateSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=5_000)


class RenderRequestSerializer(serializers.Serializer):
    variables = JSONObjectField(required=False, help_text="Values for the template's variables.")


class RenderResponseSerializer(serializers.Serializer):
    messages = MessageSerializer(many=True)


class VersionRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    version = serializers.IntegerField()
    label = serializers.CharField(help_text="`<prompt slug>@v<version>`")
    content_hash = serializers.CharField()


class DiffLineSerializer(serializers.Serializer):
    op = serializers.ChoiceField(
        choices=[(" ", "same"), ("+", "added"), ("-", "removed"), ("@", "hunk header")]
    )
    text = serializers.CharField(trim_whitespace=False, allow_blank=True)


class DiffQuerySerializer(serializers.Serializer):
    against = serializers.UUIDField(help_text="Id of the version to compare with (the old side).")


class DiffSerializer(serializers.Serializer):
    from_ = VersionRefSerializer(help_text="The old side: the `against` version.")
    to = VersionRefSerializer(help_text="The new side: this version.")
    lines = DiffLineSerializer(many=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields

"""Shapes of the releases API. Shapes only: every rule is in ``releases.services``."""

from rest_framework import serializers

from apps.catalog import selectors as catalog_selectors
from apps.catalog.api.serializers import CreateOnlyMixin, DiffLineSerializer
from apps.catalog.models import DatasetVersion, ModelVersion, Product, PromptTemplateVersion
from apps.core.api import JSONObjectField, ScopedPrimaryKeyRelatedField

from ..models import Release, ReleaseStatus
from ..selectors import release_list_for

SETTINGS_HELP = (
    "Gateway settings: `fallback` (up to 5 model version ids of the team), `cache` "
    '(`{"mode": "off" | "exact", "ttl_seconds"}`), `timeout_seconds`, `max_retries`, '
    "`max_tokens`. Omitted keys take their defaults."
)


def _username_field() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)


class DatasetVersionsField(serializers.ManyRelatedField):
    """Dataset version ids of a release, read from its prefetched links (no query per row)."""

    def __init__(self, **kwargs):
        kwargs.setdefault(
            "child_relation",
            ScopedPrimaryKeyRelatedField(
                model=DatasetVersion, selector=catalog_selectors.dataset_version_list_for
            ),
        )
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def get_attribute(self, instance):
        return [link.dataset_version for link in instance.dataset_links.all()]


def _prompt_version_field(**kwargs):
    return ScopedPrimaryKeyRelatedField(
        model=PromptTemplateVersion,
        selector=catalog_selectors.prompt_version_list_for,
        help_text="Prompt template version id (of the product's team).",
        **kwargs,
    )


def _model_version_field(**kwargs):
    return ScopedPrimaryKeyRelatedField(
        model=ModelVersion,
        selector=catalog_selectors.model_version_list_for,
        help_text="Model version id (of the product's team).",
        **kwargs,
    )


class ReleaseSerializer(serializers.ModelSerializer):
    product = ScopedPrimaryKeyRelatedField(
        model=Product,
        selector=catalog_selectors.product_list_for,
        help_text="Product id (set on create only).",
    )
    version = serializers.CharField(max_length=64, help_text="Semantic version, such as 1.4.0.")
    prompt_version = _prompt_version_field()
    model_version = _model_version_field()
    dataset_versions = DatasetVersionsField(help_text="Dataset version ids (of the team).")
    settings = JSONObjectField(required=False, help_text=SETTINGS_HELP)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    status = serializers.ChoiceField(choices=ReleaseStatus.choices, read_only=True)
    created_by = _username_field()

    class Meta:
        model = Release
        fields = [
            "id",
            "product",
            "version",
            "prompt_version",
            "model_version",
            "dataset_versions",
            "settings",
            "notes",
            "status",
            "fingerprint",
            "frozen_at",
            "effective_from",
            "effective_to",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "status",
            "fingerprint",
            "frozen_at",
            "effective_from",
            "effective_to",
            "created_by",
            "created_at",
            "updated_at",
        ]
        validators = []  # the version's uniqueness is checked by the service (409)


class ReleaseUpdateSerializer(CreateOnlyMixin, serializers.Serializer):
    """PATCH of a draft: any of its parts. A frozen or non-draft release is a 409."""

    create_only = {"product": lambda release: release.product_id}

    version = serializers.CharField(max_length=64, required=False)
    prompt_version = _prompt_version_field(required=False)
    model_version = _model_version_field(required=False)
    dataset_versions = DatasetVersionsField(help_text="Replaces the release's dataset versions.")
    settings = JSONObjectField(required=False, help_text=SETTINGS_HELP)
    notes = serializers.CharField(required=False, allow_blank=True, max_length=20_000)


# --- Diff ------------------------------------------------------------------------------------


class ReleaseRefSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    version = serializers.CharField()
    label = serializers.CharField(help_text="`<product slug>@<version>`")
    status = serializers.ChoiceField(choices=ReleaseStatus.choices)
    fingerprint = serializers.CharField()


class ValueChangeSerializer(serializers.Serializer):
    """One changed leaf: its dotted key, the old and the new value (null when absent)."""

    key = serializers.CharField()
    from_ = serializers.JSONField(allow_null=True)
    to = serializers.JSONField(allow_null=True)

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class DiffPartSerializer(serializers.Serializer):
    changed = serializers.BooleanField()
    from_ = serializers.CharField(allow_null=True, help_text="The old side's version label.")
    to = serializers.CharField(help_text="The new side's version label.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return fields


class PromptPartSerializer(DiffPartSerializer):
    lines = DiffLineSerializer(many=True, help_text="Line diff of the chat messages.")
    parameters = ValueChangeSerializer(many=True, help_text="Changed default parameters.")


class ModelPartSerializer(DiffPartSerializer):
    fields_ = ValueChangeSerializer(many=True, help_text="Changed provider, model and parameters.")

    def get_fields(self):
        fields = super().get_fields()
        fields["fields"] = fields.pop("fields_")
        return fields


class DatasetPartSerializer(serializers.Serializer):
    added = serializers.ListField(child=serializers.CharField())
    removed = serializers.ListField(child=serializers.CharField())
    unchanged = serializers.ListField(child=serializers.CharField())


class ReleaseDiffSerializer(serializers.Serializer):
    """What changes from one release to another: prompt, model, datasets, settings."""

    prompt = PromptPartSerializer()
    model = ModelPartSerializer()
    datasets = DatasetPartSerializer()
    settings = ValueChangeSerializer(many=True)


class ReleaseCompareSerializer(ReleaseDiffSerializer):
    from_ = ReleaseRefSerializer(
        allow_null=True, help_text="The old side (`against`); null when there is none."
    )
    to = ReleaseRefSerializer(help_text="The new side: this release.")

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = fields.pop("from_")
        return {"from": fields.pop("from"), "to": fields.pop("to"), **fields}


class ReleaseDiffQuerySerializer(serializers.Serializer):
    against = serializers.UUIDField(required=False)


class LiveQuerySerializer(serializers.Serializer):
    at = serializers.DateTimeField(required=False)


class RunTargetSerializer(serializers.Serializer):
    """A release, or a prompt version and a model version: what a playground run, a batch or
    an evaluation runs (``apps.releases.selectors.run_target_for`` checks the pair)."""

    release = ScopedPrimaryKeyRelatedField(
        model=Release,
        selector=release_list_for,
        required=False,
        allow_null=True,
        help_text="Release id: its prompt, model, fallbacks and settings. Or give "
        "`prompt_version` and `model_version` instead.",
    )
    prompt_version = ScopedPrimaryKeyRelatedField(
        model=PromptTemplateVersion,
        selector=catalog_selectors.prompt_version_list_for,
        required=False,
        allow_null=True,
        help_text="Prompt version id (without a release).",
    )
    model_version = ScopedPrimaryKeyRelatedField(
        model=ModelVersion,
        selector=catalog_selectors.model_version_list_for,
        required=False,
        allow_null=True,
        help_text="Model version id (without a release).",
    )

"""Query filters of the catalog API. A value that does not parse is a 400, never ignored."""

from django import forms
from django_filters import rest_framework as filters

from ..models import (
    DatasetFormat,
    DatasetVersion,
    ModelVersion,
    PIIClass,
    Product,
    PromptTemplateVersion,
    RiskClass,
    Stage,
)


class StrictBooleanField(forms.NullBooleanField):
    """``true``/``false`` (or ``1``/``0``); anything else is an error rather than "no filter"."""

    def to_python(self, value):
        if value in (None, ""):
            return None
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise forms.ValidationError("Use true or false.", code="invalid")


class StrictBooleanFilter(filters.BooleanFilter):
    field_class = StrictBooleanField

    def __init__(self, *args, **kwargs):
        kwargs["widget"] = forms.TextInput  # not BooleanWidget, which turns "maybe" into None
        super().__init__(*args, **kwargs)


class ProductFilter(filters.FilterSet):
    stage = filters.ChoiceFilter(choices=Stage.choices)
    risk_class = filters.ChoiceFilter(choices=RiskClass.choices)
    owner_team = filters.CharFilter(field_name="owner_team__slug", help_text="Team slug.")
    slug = filters.CharFilter()

    class Meta:
        model = Product
        fields = ["stage", "risk_class", "owner_team", "slug"]


class ArtifactFilter(filters.FilterSet):
    owner_team = filters.CharFilter(field_name="owner_team__slug", help_text="Team slug.")
    slug = filters.CharFilter()


class VersionFilter(filters.FilterSet):
    deprecated = StrictBooleanFilter(
        method="filter_deprecated", help_text="true: deprecated only; false: current only."
    )
    content_hash = filters.CharFilter()
    version = filters.NumberFilter(min_value=1, max_value=2**31 - 1)

    def filter_deprecated(self, queryset, name, value):
        if value is None:
            return queryset
        return queryset.filter(deprecated_at__isnull=not value)


class PromptVersionFilter(VersionFilter):
    prompt = filters.UUIDFilter(field_name="prompt_id", help_text="Prompt template id.")

    class Meta:
        model = PromptTemplateVersion
        fields = ["prompt", "deprecated", "content_hash", "version"]


class ModelVersionFilter(VersionFilter):
    model = filters.UUIDFilter(field_name="model_id", help_text="Model id.")
    provider = filters.CharFilter()

    class Meta:
        model = ModelVersion
        fields = ["model", "deprecated", "content_hash", "version", "provider"]


class DatasetVersionFilter(VersionFilter):
    dataset = filters.UUIDFilter(field_name="dataset_id", help_text="Dataset id.")
    # Not ``format``: DRF reads that query parameter as the response format (URL_FORMAT_OVERRIDE).
    file_format = filters.ChoiceFilter(field_name="format", choices=DatasetFormat.choices)
    pii_class = filters.ChoiceFilter(choices=PIIClass.choices)
    sha256 = filters.CharFilter()

    class Meta:
        model = DatasetVersion
        fields = [
            "dataset",
            "deprecated",
            "content_hash",
            "version",
            "file_format",
            "pii_class",
            "sha256",
        ]

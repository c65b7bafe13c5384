"""Query filters of the playground API. A value that does not parse is a 400."""

from django_filters import rest_framework as filters

from ..models import BatchRun, BatchState, PlaygroundRun, RunState


class _TargetFilter(filters.FilterSet):
    product = filters.UUIDFilter(field_name="product_id", help_text="Product id.")
    release = filters.UUIDFilter(field_name="release_id", help_text="Release id.")
    prompt_version = filters.UUIDFilter(
        field_name="prompt_version_id", help_text="Prompt version id."
    )
    model_version = filters.UUIDFilter(field_name="model_version_id", help_text="Model version id.")
    created_by = filters.CharFilter(
        field_name="created_by__username", help_text="Username of who started it."
    )


class PlaygroundRunFilter(_TargetFilter):
    state = filters.ChoiceFilter(choices=RunState.choices)

    class Meta:
        model = PlaygroundRun
        fields = ["state", "product", "release", "prompt_version", "model_version", "created_by"]


class BatchRunFilter(_TargetFilter):
    state = filters.ChoiceFilter(choices=BatchState.choices)
    dataset_version = filters.UUIDFilter(
        field_name="dataset_version_id", help_text="Dataset version id."
    )

    class Meta:
        model = BatchRun
        fields = [
            "state",
            "product",
            "release",
            "prompt_version",
            "model_version",
            "dataset_version",
            "created_by",
        ]

"""Shapes of the playground API. Shapes only: every rule is in ``playground.services``.

A run's results (state, output, tokens, cost, latency, rendered messages, progress) are written
by the worker only: every one of those fields is read-only here.
"""

from rest_framework import serializers

from apps.catalog import selectors as catalog_selectors
from apps.catalog.api.serializers import MessageSerializer
from apps.catalog.models import DatasetVersion
from apps.core.api import JSONObjectField, ScopedPrimaryKeyRelatedField
from apps.core.schema import NamedChoiceField
from apps.releases.api.serializers import RunTargetSerializer

from ..models import (
    DEFAULT_CONCURRENCY,
    MAX_CONCURRENCY,
    MIN_CONCURRENCY,
    BatchRun,
    BatchState,
    PlaygroundRun,
    RunState,
)


def _username() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)


TargetSerializer = RunTargetSerializer


class PlaygroundRunCreateSerializer(TargetSerializer):
    variables = JSONObjectField(
        required=False,
        default=dict,
        help_text="The template's variables, checked against the prompt's `variables_schema`.",
    )


class PlaygroundRunSerializer(serializers.ModelSerializer):
    """A run: what was asked, and (once the worker is done) what came back."""

    state = NamedChoiceField(
        enum_name="PlaygroundRunStateEnum", choices=RunState.choices, read_only=True
    )
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    variables = serializers.DictField(read_only=True)
    messages = MessageSerializer(
        many=True, read_only=True, help_text="The rendered prompt that was sent."
    )
    created_by = _username()

    class Meta:
        model = PlaygroundRun
        fields = [
            "id",
            "state",
            "team",
            "product",
            "release",
            "prompt_version",
            "model_version",
            "variables",
            "output",
            "messages",
            "tokens_in",
            "tokens_out",
            "cost",
            "latency_ms",
            "ttft_ms",
            "provider_model",
            "cache_hit",
            "error_code",
            "error_message",
            "call",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class BatchRunCreateSerializer(TargetSerializer):
    dataset_version = ScopedPrimaryKeyRelatedField(
        model=DatasetVersion,
        selector=catalog_selectors.dataset_version_list_for,
        help_text="Dataset version id: a JSONL or CSV file stored in the portal; one row is "
        "one set of variables.",
    )
    variables = JSONObjectField(
        required=False,
        default=dict,
        help_text="Values used for every row; a row's own values win.",
    )
    concurrency = serializers.IntegerField(
        min_value=MIN_CONCURRENCY,
        max_value=MAX_CONCURRENCY,
        default=DEFAULT_CONCURRENCY,
        help_text="Calls in flight at once.",
    )


class BatchRunSerializer(serializers.ModelSerializer):
    """A batch and its progress; its rows are downloaded from `results/`."""

    state = NamedChoiceField(
        enum_name="BatchRunStateEnum", choices=BatchState.choices, read_only=True
    )
    team = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    variables = serializers.DictField(read_only=True)
    progress = serializers.FloatField(
        read_only=True, help_text="Finished rows over all rows, from 0 to 1."
    )
    created_by = _username()
    cancelled_by = _username()

    class Meta:
        model = BatchRun
        fields = [
            "id",
            "state",
            "team",
            "product",
            "release",
            "prompt_version",
            "model_version",
            "dataset_version",
            "variables",
            "concurrency",
            "total",
            "succeeded_count",
            "failed_count",
            "progress",
            "tokens_in",
            "tokens_out",
            "cost",
            "error_message",
            "created_by",
            "cancelled_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

"""Shapes of the gateway API. Shapes only: every rule is in ``gateway.services``.

``secret`` is write-only: a response says only ``secret_set``. A provider call shows its
telemetry only, never the messages or the output.
"""

from decimal import Decimal

from rest_framework import serializers

from apps.core.api import JSONObjectField

from ..models import Provider, ProviderCall, ProviderKind, ProviderPrice

WRITE_ONLY_KEY_HELP = (
    "The provider's API key (write-only: stored encrypted, never returned; responses say "
    "`secret_set`). On PATCH, a non-empty value sets or replaces it."
)


class ProviderSerializer(serializers.ModelSerializer):
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=150)
    kind = serializers.ChoiceField(choices=ProviderKind.choices)
    base_url = serializers.CharField(
        max_length=500,
        required=False,
        allow_blank=True,
        help_text="http(s) base URL of the provider's API; blank for `builtin`.",
    )
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=600, required=False)
    max_retries = serializers.IntegerField(min_value=0, max_value=10, required=False)
    config = JSONObjectField(
        required=False, help_text="Provider options, such as `latency_ms` for `builtin`."
    )
    enabled = serializers.BooleanField(required=False)
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=4000,
        trim_whitespace=True,
        style={"input_type": "password"},
        help_text=WRITE_ONLY_KEY_HELP,
    )
    secret_set = serializers.BooleanField(read_only=True, help_text="Whether a secret is stored.")
    created_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, allow_null=True
    )

    class Meta:
        model = Provider
        fields = [
            "id",
            "slug",
            "name",
            "kind",
            "base_url",
            "timeout_seconds",
            "max_retries",
            "config",
            "enabled",
            "secret",
            "secret_set",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "secret_set", "created_by", "created_at", "updated_at"]


class ProviderUpdateSerializer(serializers.Serializer):
    """A PATCH body: any of the fields below; the slug is set on create only."""

    name = serializers.CharField(max_length=150, required=False)
    kind = serializers.ChoiceField(choices=ProviderKind.choices, required=False)
    base_url = serializers.CharField(max_length=500, required=False, allow_blank=True)
    timeout_seconds = serializers.IntegerField(min_value=1, max_value=600, required=False)
    max_retries = serializers.IntegerField(min_value=0, max_value=10, required=False)
    config = JSONObjectField(required=False)
    enabled = serializers.BooleanField(required=False)
    secret = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=4000,
        style={"input_type": "password"},
        help_text=WRITE_ONLY_KEY_HELP,
    )


class ProviderPriceSerializer(serializers.ModelSerializer):
    provider_model = serializers.CharField(max_length=200)
    input_per_million = serializers.DecimalField(
        max_digits=12, decimal_places=6, min_value=Decimal(0), help_text="Cost per 1M input tokens."
    )
    output_per_million = serializers.DecimalField(
        max_digits=12,
        decimal_places=6,
        min_value=Decimal(0),
        help_text="Cost per 1M output tokens.",
    )
    provider = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = ProviderPrice
        fields = [
            "id",
            "provider",
            "provider_model",
            "input_per_million",
            "output_per_million",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "provider", "created_at", "updated_at"]


class CallReleaseSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    version = serializers.CharField(read_only=True)


class ProviderCallSerializer(serializers.ModelSerializer):
    """One call's telemetry: no payload (messages, output) and no secret, ever."""

    product = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True, help_text="Product slug."
    )
    release = CallReleaseSerializer(read_only=True, allow_null=True)
    provider = serializers.SlugRelatedField(
        slug_field="slug",
        read_only=True,
        allow_null=True,
        help_text="Provider slug; null when no provider was reached or it was deleted.",
    )
    model_version = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    prompt_version = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    cost = serializers.DecimalField(
        max_digits=16,
        decimal_places=8,
        read_only=True,
        coerce_to_string=True,
        help_text="In the currency units of the provider's price table.",
    )

    class Meta:
        model = ProviderCall
        fields = [
            "id",
            "created_at",
            "product",
            "release",
            "provider",
            "provider_model",
            "model_version",
            "prompt_version",
            "source",
            "outcome",
            "error_class",
            "status_code",
            "attempts",
            "tokens_in",
            "tokens_out",
            "cost",
            "latency_ms",
            "ttft_ms",
            "cache_hit",
            "fallback_index",
            "streamed",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "latency_ms": {"help_text": "The whole call, retries and fallbacks included."},
            "ttft_ms": {"help_text": "Time to the first token (streamed calls)."},
            "attempts": {"help_text": "Requests sent to providers for this call."},
            "fallback_index": {
                "help_text": "0: the primary model answered; n: the n-th fallback did."
            },
        }

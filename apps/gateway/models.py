"""Providers an LLM call can go to, and what their models cost.

A provider's secret (its API key) is kept only as a Fernet token (``gateway.secrets``): never in
clear, never in history (the field is excluded from it), never in an audit event (which says only
``"set"`` or ``"changed"``), never in an API response (which says ``secret_set``).
"""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models

from apps.core.history import history
from apps.core.models import BaseModel


class ProviderKind(models.TextChoices):
    OPENAI_COMPATIBLE = "openai_compatible", "OpenAI-compatible"
    ANTHROPIC = "anthropic", "Anthropic"
    BUILTIN = "builtin", "Built-in (deterministic)"


http_url = URLValidator(schemes=["http", "https"], message="Enter an http:// or https:// URL.")


class Provider(BaseModel):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=150)
    kind = models.CharField(max_length=32, choices=ProviderKind.choices)
    base_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[http_url],
        help_text="The API's base URL (http or https); blank for the built-in provider.",
    )
    timeout_seconds = models.PositiveIntegerField(
        default=30, validators=[MinValueValidator(1), MaxValueValidator(600)]
    )
    max_retries = models.PositiveSmallIntegerField(default=2, validators=[MaxValueValidator(10)])
    config = models.JSONField(
        default=dict,
        blank=True,
        help_text="Provider options, such as the built-in provider's ``latency_ms``.",
    )
    # A Fernet token (see gateway.secrets); blank when no secret is set. Never the clear value.
    secret_encrypted = models.TextField(blank=True, default="", editable=False)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    history = history(excluded_fields=["secret_encrypted"])

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.slug

    @property
    def secret_set(self) -> bool:
        return bool(self.secret_encrypted)

    def clean(self) -> None:
        super().clean()
        if self.kind == ProviderKind.BUILTIN:
            if self.base_url:
                raise ValidationError(
                    {"base_url": ["The built-in provider makes no network call: leave it blank."]}
                )
        elif not self.base_url:
            raise ValidationError(
                {"base_url": [f"A {self.get_kind_display()} provider needs its base URL."]}
            )
        if not isinstance(self.config, dict):
            raise ValidationError({"config": ["A JSON object."]})
        latency = self.config.get("latency_ms", 0)
        if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
            raise ValidationError({"config": ["latency_ms is a number of milliseconds, >= 0."]})


class ProviderPrice(BaseModel):
    """What one of a provider's models costs, per million tokens in and out."""

    provider = models.ForeignKey(Provider, on_delete=models.CASCADE, related_name="prices")
    provider_model = models.CharField(max_length=200)
    input_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(0)]
    )
    output_per_million = models.DecimalField(
        max_digits=12, decimal_places=6, validators=[MinValueValidator(0)]
    )

    history = history()

    class Meta:
        ordering = ["provider_model"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_model"], name="gateway_price_unique_per_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.provider.slug}:{self.provider_model}"


class CallOutcome(models.TextChoices):
    OK = "ok", "OK"
    ERROR = "error", "Error"


class CallSource(models.TextChoices):
    """Which part of the portal made a call (each goes through the same pipeline)."""

    PLAYGROUND = "playground", "Playground"
    BATCH = "batch", "Batch run"
    EVALUATION = "evaluation", "Evaluation"
    GATEWAY = "gateway", "Gateway"
    API = "api", "API or script"


class ProviderCall(models.Model):
    """One call through the pipeline: telemetry (tokens, cost, latency, outcome) and, until the
    retention period ends, its payload (``request_messages``, ``response_text``).

    A plain model, not governed and not history-tracked: a call is an observation, written once
    by the pipeline (``gateway.recorder`` writes them in batches) and never edited. No audit
    event is recorded for it (calls are telemetry, not governed changes).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    product = models.ForeignKey(
        "catalog.Product", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    release = models.ForeignKey(
        "releases.Release", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    prompt_version = models.ForeignKey(
        "catalog.PromptTemplateVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    model_version = models.ForeignKey(
        "catalog.ModelVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    provider = models.ForeignKey(
        Provider, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    provider_model = models.CharField(max_length=200, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal(0))
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    cache_hit = models.BooleanField(default=False)
    outcome = models.CharField(max_length=8, choices=CallOutcome.choices)
    error_class = models.CharField(max_length=100, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # 0: the release's primary model answered (or was the last tried); n: the n-th fallback.
    fallback_index = models.PositiveSmallIntegerField(default=0)
    streamed = models.BooleanField(default=False)
    source = models.CharField(max_length=16, choices=CallSource.choices, default=CallSource.API)
    # The payload: what was sent (the rendered messages) and the answer's text. Cleared, with
    # the metadata above kept, once older than PAYLOAD_RETENTION_DAYS (compliance.retention).
    request_messages = models.JSONField(null=True, blank=True)
    response_text = models.TextField(blank=True, default="")
    payload_purged_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["product", "-created_at"], name="gw_call_product_time"),
            models.Index(fields=["release", "-created_at"], name="gw_call_release_time"),
            models.Index(fields=["provider", "-created_at"], name="gw_call_provider_time"),
            models.Index(fields=["outcome", "-created_at"], name="gw_call_outcome_time"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_model or '?'} {self.outcome} ({self.attempts} attempts)"

"""Playground runs (one call) and batch runs (one call per dataset row), and their results.

These are worker-written results, like ``gateway.ProviderCall``: plain models, not governed and
not history-tracked (a progress counter changing every second is not a governed change). The
audit trail records who started and who cancelled a run (``playground.services``); the calls
themselves are telemetry in ``gateway.ProviderCall``, which each result links to (``call``).

A run records what it ran against (a release, or a prompt version + model version) and the team
that owns it, which is its scope. The version and release links are ``SET_NULL``: a run does not
pin a draft version (it may still be deleted); the run keeps what was sent and answered.
"""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

MIN_CONCURRENCY = 1
MAX_CONCURRENCY = 16
DEFAULT_CONCURRENCY = 4


class RunState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# The one table of allowed playground-run moves.
RUN_TRANSITIONS: dict[str, tuple[str, ...]] = {
    RunState.QUEUED: (RunState.RUNNING, RunState.FAILED),
    RunState.RUNNING: (RunState.SUCCEEDED, RunState.FAILED),
    RunState.SUCCEEDED: (),
    RunState.FAILED: (),
}


class BatchState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The one table of allowed batch-run moves.
BATCH_TRANSITIONS: dict[str, tuple[str, ...]] = {
    BatchState.QUEUED: (BatchState.RUNNING, BatchState.FAILED, BatchState.CANCELLED),
    BatchState.RUNNING: (BatchState.SUCCEEDED, BatchState.FAILED, BatchState.CANCELLED),
    BatchState.SUCCEEDED: (),
    BatchState.FAILED: (),
    BatchState.CANCELLED: (),
}
BATCH_ACTIVE = (BatchState.QUEUED, BatchState.RUNNING)
BATCH_FINISHED = (BatchState.SUCCEEDED, BatchState.FAILED, BatchState.CANCELLED)


class ItemState(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"  # not run: the batch was cancelled first


ITEM_FINISHED = (ItemState.SUCCEEDED, ItemState.FAILED)
ITEM_PENDING = (ItemState.QUEUED, ItemState.RUNNING)


def _link(to: str):
    return models.ForeignKey(to, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")


class Targeted(models.Model):
    """What a run runs: a release, or a prompt version + model version; and its scope, the team
    that owns the target."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    team = models.ForeignKey(
        "accounts.Team", on_delete=models.PROTECT, related_name="+", editable=False
    )
    product = _link("catalog.Product")
    release = _link("releases.Release")
    prompt_version = _link("catalog.PromptTemplateVersion")
    model_version = _link("catalog.ModelVersion")

    class Meta:
        abstract = True

    @property
    def target_label(self) -> str:
        if self.release_id and self.release:
            return f"{self.release.product.slug} {self.release.version}"
        parts = [str(v) for v in (self.prompt_version, self.model_version) if v is not None]
        return " + ".join(parts) or "(deleted)"


class PlaygroundRun(Targeted):
    """One call of a release (or a prompt + model pair) with a set of variables."""

    variables = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.QUEUED)
    output = models.TextField(blank=True)
    messages = models.JSONField(default=list, blank=True, help_text="The rendered prompt sent.")
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal(0))
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    provider_model = models.CharField(max_length=200, blank=True)
    cache_hit = models.BooleanField(
        default=False, help_text="Answered from the release's response cache (no cost)."
    )
    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True)
    call = models.ForeignKey(
        "gateway.ProviderCall", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["team", "-created_at"], name="pg_run_team_time"),
            models.Index(fields=["created_by", "-created_at"], name="pg_run_user_time"),
        ]

    def __str__(self) -> str:
        return f"playground run {str(self.pk)[:8]} ({self.state})"

    @property
    def done(self) -> bool:
        return not RUN_TRANSITIONS[self.state]

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out


class BatchRun(Targeted):
    """A release (or a prompt + model pair) over every row of a dataset version."""

    dataset_version = models.ForeignKey(
        "catalog.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    variables = models.JSONField(
        default=dict, blank=True, help_text="Values for every row; a row's own values win."
    )
    state = models.CharField(max_length=16, choices=BatchState.choices, default=BatchState.QUEUED)
    concurrency = models.PositiveSmallIntegerField(
        default=DEFAULT_CONCURRENCY,
        validators=[MinValueValidator(MIN_CONCURRENCY), MaxValueValidator(MAX_CONCURRENCY)],
    )
    total = models.PositiveIntegerField(default=0)
    # Rows per chunk task, fixed when the batch is created; ``cursor`` is the first row of the
    # chunk allowed to enqueue the next one (one chunk of a batch in flight at a time).
    chunk_size = models.PositiveSmallIntegerField(default=25, editable=False)
    cursor = models.PositiveIntegerField(default=0, editable=False)
    succeeded_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=18, decimal_places=8, default=Decimal(0))
    error_message = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["team", "-created_at"], name="pg_batch_team_time")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(concurrency__gte=MIN_CONCURRENCY)
                & models.Q(concurrency__lte=MAX_CONCURRENCY),
                name="pg_batch_concurrency_range",
            )
        ]

    def __str__(self) -> str:
        return f"batch run {str(self.pk)[:8]} ({self.state})"

    @property
    def done_count(self) -> int:
        return self.succeeded_count + self.failed_count

    @property
    def active(self) -> bool:
        return self.state in BATCH_ACTIVE

    @property
    def progress(self) -> float:
        return self.done_count / self.total if self.total else 0.0

    @property
    def percent(self) -> int:
        return int(100 * self.progress)


class BatchItem(models.Model):
    """One row of a batch: the variables it sent and what came back."""

    id = models.BigAutoField(primary_key=True)
    batch = models.ForeignKey(BatchRun, on_delete=models.CASCADE, related_name="items")
    index = models.PositiveIntegerField(help_text="The row's position in the dataset, from 0.")
    variables = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=16, choices=ItemState.choices, default=ItemState.QUEUED)
    output = models.TextField(blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal(0))
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    call = models.ForeignKey(
        "gateway.ProviderCall", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["batch", "index"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "index"], name="pg_batch_item_unique_index")
        ]
        indexes = [models.Index(fields=["batch", "state", "index"], name="pg_item_batch_state")]

    def __str__(self) -> str:
        return f"row {self.index} of {self.batch_id} ({self.state})"

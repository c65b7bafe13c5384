"""Evaluation suites (versioned like the catalog), their cases, runs and per-case results.

A suite belongs to a team. Its cases live in immutable suite versions: editing the cases or
importing more from a dataset version makes a new version, and a run pins the exact version it
ran. Runs are written only by the worker (``evaluations.tasks``): no API accepts results.
"""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from apps.accounts.models import Team
from apps.catalog.models import Version
from apps.core.exceptions import ApplicationError
from apps.core.history import history
from apps.core.models import BaseModel


class EvalSuite(BaseModel):
    audit_noun = "eval_suite"

    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=150)
    owner_team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="+")
    description = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = history()

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(fields=["owner_team", "slug"], name="evalsuite_unique_slug")
        ]

    def __str__(self) -> str:
        return self.slug


class EvalSuiteVersion(Version):
    """An immutable set of cases. ``source_dataset_version`` names the dataset version the cases
    were imported from, if any (a run records its content hash)."""

    PARENT = "suite"
    audit_noun = "eval_suite_version"
    OWNED_RELATIONS = ("cases",)

    suite = models.ForeignKey(EvalSuite, on_delete=models.PROTECT, related_name="versions")
    source_dataset_version = models.ForeignKey(
        "catalog.DatasetVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )

    history = history()

    class Meta(Version.Meta):
        constraints = [
            models.UniqueConstraint(fields=["suite", "version"], name="evalsuiteversion_unique")
        ]
        indexes = [models.Index(fields=["suite", "-version"])]

    def __str__(self) -> str:
        return f"{self.suite.slug}@v{self.version}"

    def content(self, cases: list["EvalCase"] | None = None) -> dict:
        if cases is None:
            cases = list(self.cases.all())
        return {
            "kind": "eval_suite_version",
            "source_dataset_version": (
                self.source_dataset_version.content_hash if self.source_dataset_version_id else None
            ),
            "cases": [case.content() for case in cases],
        }


class EvalCase(BaseModel):
    """One case of a suite version (immutable with it).

    ``assertions`` is a list of ``{"type": ..., ...}`` (see ``evaluations.assertions``).
    ``group`` ties fairness/robustness variants together: cases of one group share the
    expectation and differ in the value of ``vary`` (the variable that varies)."""

    suite_version = models.ForeignKey(
        EvalSuiteVersion, on_delete=models.CASCADE, related_name="cases"
    )
    key = models.CharField(max_length=100)
    position = models.PositiveIntegerField()
    variables = models.JSONField(default=dict, blank=True)
    expected = models.TextField(blank=True)
    assertions = models.JSONField(default=list, blank=True)
    group = models.CharField(max_length=100, blank=True)
    vary = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["suite_version", "key"], name="evalcase_unique_key")
        ]

    def __str__(self) -> str:
        return self.key

    def save(self, *args, **kwargs):
        """A case is part of its immutable suite version: written once, never changed."""
        if not self._state.adding:
            raise ApplicationError(
                "immutable",
                f"Case {self.key} belongs to {self.suite_version_id and self.suite_version}, "
                "which is immutable: create a new suite version instead.",
                status=409,
            )
        super().save(*args, **kwargs)

    def content(self) -> dict:
        return {
            "key": self.key,
            "variables": self.variables,
            "expected": self.expected,
            "assertions": self.assertions,
            "group": self.group,
            "vary": self.vary,
        }


class RunState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_STATES = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED})
ACTIVE_STATES = frozenset({RunState.QUEUED, RunState.RUNNING})

# The one table of allowed run moves (``evaluations.runs`` is the only code that moves a run).
RUN_TRANSITIONS: dict[str, tuple[str, ...]] = {
    RunState.QUEUED: (RunState.RUNNING, RunState.FAILED, RunState.CANCELLED),
    RunState.RUNNING: (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED),
    RunState.SUCCEEDED: (),
    RunState.FAILED: (),
    RunState.CANCELLED: (),
}

MIN_CONCURRENCY = 1
MAX_CONCURRENCY = 32
DEFAULT_CONCURRENCY = 4


class CrRole(models.TextChoices):
    """What a run is to the change request that started it."""

    BASELINE = "baseline", "Baseline"
    PROPOSED = "proposed", "Proposed"


class EvalRun(BaseModel):
    """A release (or a prompt version + model version) against a suite version.

    What it ran with is recorded at creation: the suite version, the release fingerprint, the
    content hash of the dataset version the cases came from, the harness version. The worker
    moves ``state`` and fills the counters and ``aggregates``; those are housekeeping fields
    (bulk-updated, not governed content)."""

    audit_noun = "eval_run"
    # What the worker (and the transitions of ``evaluations.runs``) bulk-update: progress,
    # results and the bookkeeping of the chunk chain (``epoch``, ``cursor``, ``heartbeat_at``,
    # ``worker``). What the run ran with is set once, at creation.
    HOUSEKEEPING_FIELDS = frozenset(
        {
            "state",
            "total",
            "completed",
            "passed",
            "errored",
            "aggregates",
            "pass_rate",
            "cost",
            "started_at",
            "finished_at",
            "error",
            "cancelled_by",
            "epoch",
            "cursor",
            "heartbeat_at",
            "worker",
            "updated_at",
        }
    )

    suite_version = models.ForeignKey(
        EvalSuiteVersion, on_delete=models.PROTECT, related_name="runs"
    )
    release = models.ForeignKey(
        "releases.Release", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    prompt_version = models.ForeignKey(
        "catalog.PromptTemplateVersion", on_delete=models.PROTECT, related_name="+"
    )
    model_version = models.ForeignKey(
        "catalog.ModelVersion", on_delete=models.PROTECT, related_name="+"
    )
    change_request = models.ForeignKey(
        "changes.ChangeRequest",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="eval_runs",
    )
    cr_role = models.CharField(max_length=16, choices=CrRole.choices, blank=True)
    # The scope: the team owning the release's product (or the prompt version's prompt).
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="+", editable=False
    )
    state = models.CharField(max_length=16, choices=RunState.choices, default=RunState.QUEUED)
    concurrency = models.PositiveSmallIntegerField(
        default=DEFAULT_CONCURRENCY,
        validators=[MinValueValidator(MIN_CONCURRENCY), MaxValueValidator(MAX_CONCURRENCY)],
        help_text="Calls of this run in flight at once.",
    )
    total = models.PositiveIntegerField(default=0)
    completed = models.PositiveIntegerField(default=0)
    passed = models.PositiveIntegerField(default=0)
    errored = models.PositiveIntegerField(default=0)
    pass_rate = models.FloatField(null=True, blank=True)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal(0))
    aggregates = models.JSONField(default=dict, blank=True)
    release_fingerprint = models.CharField(max_length=64, blank=True)
    dataset_version_hash = models.CharField(max_length=64, blank=True)
    harness_version = models.CharField(max_length=32)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    cancelled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The chunk chain (see ``evaluations.runs``): ``epoch`` is bumped when a lost chain is
    # restarted (older chunks then do nothing), ``cursor`` is the rank of the first case of the
    # one chunk allowed to run, ``heartbeat_at``/``worker`` say when and where a chunk last
    # showed signs of life.
    epoch = models.PositiveIntegerField(default=0, editable=False)
    cursor = models.PositiveIntegerField(default=0, editable=False)
    heartbeat_at = models.DateTimeField(null=True, blank=True, editable=False)
    worker = models.CharField(max_length=200, blank=True, editable=False)

    history = history()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["release", "suite_version", "-created_at"]),
            models.Index(fields=["state"]),
            models.Index(fields=["team", "-created_at"], name="evalrun_team_time"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(concurrency__gte=MIN_CONCURRENCY)
                & models.Q(concurrency__lte=MAX_CONCURRENCY),
                name="evalrun_concurrency_range",
            )
        ]

    def __str__(self) -> str:
        return f"run {str(self.pk)[:8]} of {self.suite_version}"

    @property
    def is_finished(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def percent(self) -> int:
        return int(100 * self.completed / self.total) if self.total else 0

    @property
    def failed_count(self) -> int:
        """Cases that ran and did not pass their checks (errors not included)."""
        return max(0, self.completed - self.passed - self.errored)

    @property
    def target_label(self) -> str:
        if self.release_id:
            return str(self.release)
        return f"{self.prompt_version} + {self.model_version}"


class ResultOutcome(models.TextChoices):
    PASS = "pass", "Pass"
    FAIL = "fail", "Fail"
    ERROR = "error", "Error"  # the call failed: no output to judge


class EvalResult(models.Model):
    """One case's result in one run: unique per (run, case), so a redelivered task changes
    nothing. Written once by the worker; a plain model (telemetry, like ``ProviderCall``)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="results")
    case = models.ForeignKey(EvalCase, on_delete=models.PROTECT, related_name="results")
    outcome = models.CharField(max_length=8, choices=ResultOutcome.choices)
    output = models.TextField(blank=True)
    checks = models.JSONField(default=list, blank=True)  # [{type, passed, detail}]
    error = models.TextField(blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=Decimal(0))
    call = models.ForeignKey(
        "gateway.ProviderCall", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case__position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "case"], name="evalresult_unique_per_case")
        ]
        indexes = [models.Index(fields=["run", "outcome"], name="evalresult_run_outcome")]

    def __str__(self) -> str:
        return f"{self.case.key}: {self.outcome}"

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    @property
    def failed_checks(self) -> list[dict]:
        return [c for c in self.checks or [] if isinstance(c, dict) and not c.get("passed")]

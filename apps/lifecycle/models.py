"""The product lifecycle: the conception brief, the feasibility assessment, the stage gates
and the signed requests that move a product from one stage to the next.

- ``ProductBrief``: immutable, hashed versions of what the product is for (problem, users,
  user stories, uses, data strategy, target metrics). Up to the design stage a new version is
  in force at once; after it, a new version is *proposed* and comes into force only through a
  signed ``LifecycleRequest`` of kind ``brief``.
- ``Assessment``: the technical, ethical and economic feasibility record, one per product
  (history kept): risks, affected groups, expected volume for the cost estimate.
- ``GateDefinition``: the entry criteria of a stage per risk class (data, editable by admins).
- ``LifecycleRequest``: a request to move a product to a stage (or to bring a brief version
  into force), signed by someone other than the requester (password, comment, role), bound to
  the fingerprint of what was requested and carrying the checklist it was decided on.
"""

from django.conf import settings
from django.db import models

from apps.catalog.models import Product, RiskClass, Stage
from apps.core.history import history
from apps.core.models import BaseModel


class BriefStatus(models.TextChoices):
    IN_FORCE = "in_force", "In force"
    PROPOSED = "proposed", "Proposed (awaiting a signed change request)"
    SUPERSEDED = "superseded", "Superseded"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"


class ProductBrief(BaseModel):
    """One version of a product's brief. Content fields never change after creation; only
    ``status`` moves (proposed → in_force | rejected | withdrawn; in_force → superseded)."""

    CONTENT_FIELDS = (
        "problem_statement",
        "target_users",
        "user_stories",
        "intended_uses",
        "out_of_scope_uses",
        "data_strategy",
        "target_metrics",
    )

    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="briefs")
    version = models.PositiveIntegerField(editable=False)
    problem_statement = models.TextField()
    target_users = models.TextField(blank=True)
    # [{"as_a": "...", "i_want": "...", "so_that": "..."}]
    user_stories = models.JSONField(default=list, blank=True)
    intended_uses = models.TextField(blank=True)
    out_of_scope_uses = models.TextField(blank=True)
    # {"sources": "...", "consent": "...", "pii_handling": "..."}
    data_strategy = models.JSONField(default=dict, blank=True)
    # [{"metric": "pass_rate", "suite": "<slug>", "op": ">=", "threshold": 0.9}, ...]
    target_metrics = models.JSONField(default=list, blank=True)
    changelog = models.TextField(blank=True)
    content_hash = models.CharField(max_length=64, editable=False)
    status = models.CharField(max_length=12, choices=BriefStatus.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = history()

    class Meta:
        ordering = ["product", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["product", "version"], name="brief_unique_version"),
            models.UniqueConstraint(
                fields=["product"],
                condition=models.Q(status="in_force"),
                name="brief_one_in_force",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product.slug} brief v{self.version}"


class Assessment(BaseModel):
    """The feasibility and impact assessment of a product (one; its history is kept)."""

    product = models.OneToOneField(Product, on_delete=models.PROTECT, related_name="assessment")
    technical = models.TextField(blank=True, help_text="Technical feasibility.")
    ethical = models.TextField(blank=True, help_text="Ethical feasibility and impact.")
    economic = models.TextField(blank=True, help_text="Economic feasibility.")
    # [{"title", "likelihood" 1..5, "severity" 1..5, "mitigation"}]
    risks = models.JSONField(default=list, blank=True)
    affected_groups = models.JSONField(default=list, blank=True)
    # The economic estimate: priced with the model version's provider price table.
    model_version = models.ForeignKey(
        "catalog.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    calls_per_month = models.PositiveIntegerField(default=0)
    tokens_in_per_call = models.PositiveIntegerField(default=0)
    tokens_out_per_call = models.PositiveIntegerField(default=0)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = history()

    def __str__(self) -> str:
        return f"{self.product.slug} assessment"


class GateDefinition(BaseModel):
    """The entry criteria of ``stage`` for products of ``risk_class`` (codes of
    ``apps.lifecycle.gates.CRITERIA``) and the roles whose signature moves a product there."""

    risk_class = models.CharField(max_length=16, choices=RiskClass.choices)
    stage = models.CharField(max_length=16, choices=Stage.choices)
    criteria = models.JSONField(default=list, blank=True)
    signer_roles = models.JSONField(default=list, blank=True)

    history = history()

    class Meta:
        ordering = ["risk_class", "stage"]
        constraints = [
            models.UniqueConstraint(fields=["risk_class", "stage"], name="gate_unique_stage")
        ]

    def __str__(self) -> str:
        return f"{self.risk_class} → {self.stage}"


class RequestKind(models.TextChoices):
    STAGE = "stage", "Stage transition"
    BRIEF = "brief", "Brief change"


class RequestState(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"


# The one table of allowed lifecycle-request moves.
REQUEST_TRANSITIONS: dict[str, tuple[str, ...]] = {
    RequestState.PENDING: (RequestState.APPROVED, RequestState.REJECTED, RequestState.WITHDRAWN),
    RequestState.APPROVED: (),
    RequestState.REJECTED: (),
    RequestState.WITHDRAWN: (),
}


class LifecycleRequest(BaseModel):
    product = models.ForeignKey(
        Product, on_delete=models.PROTECT, related_name="lifecycle_requests"
    )
    kind = models.CharField(max_length=8, choices=RequestKind.choices)
    from_stage = models.CharField(max_length=16, choices=Stage.choices)
    to_stage = models.CharField(max_length=16, choices=Stage.choices, blank=True)
    brief = models.ForeignKey(
        ProductBrief, null=True, blank=True, on_delete=models.PROTECT, related_name="requests"
    )
    # Deprecation: when the product's APIs stop answering and what subscribers do next.
    sunset_at = models.DateTimeField(null=True, blank=True)
    migration_note = models.TextField(blank=True)
    successor = models.ForeignKey(
        "portal.PublishedAPI", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    comment = models.TextField(blank=True)
    state = models.CharField(
        max_length=12, choices=RequestState.choices, default=RequestState.PENDING
    )
    fingerprint = models.CharField(max_length=64)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_role = models.CharField(max_length=32, blank=True)
    decision_comment = models.TextField(blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    signed_fingerprint = models.CharField(max_length=64, blank=True)
    # The checklist the decision was taken on: [{"code", "label", "met", "detail"}].
    evidence = models.JSONField(default=list, blank=True)
    # Set when the sunset task has retired the product.
    sunset_done_at = models.DateTimeField(null=True, blank=True)

    history = history()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["product", "state"]), models.Index(fields=["state"])]
        constraints = [
            models.UniqueConstraint(
                fields=["product"],
                condition=models.Q(state="pending"),
                name="lifecycle_one_pending_request",
            )
        ]

    def __str__(self) -> str:
        if self.kind == RequestKind.BRIEF:
            return f"{self.product.slug}: brief v{self.brief.version if self.brief else '?'}"
        return f"{self.product.slug}: {self.from_stage} → {self.to_stage}"

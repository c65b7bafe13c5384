"""Change requests (engineering change orders for LLM products), policies and signatures.

A change request proposes replacing a product's released release (the baseline) by another
release (the proposed). Its ``fingerprint`` covers both releases' fingerprints and the request's
own text; an ``Approval`` stores the fingerprint it signed, so an approval of other content is
void. The policy in force is copied onto the request when it is submitted.
"""

from django.conf import settings
from django.db import models

from apps.catalog.models import Product, Stage
from apps.core.history import history
from apps.core.models import BaseModel
from apps.releases.models import Release


class CRState(models.TextChoices):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    IN_REVIEW = "in_review"
    APPROVED = "approved"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    IMPLEMENTED = "implemented"


# The one table of allowed change-request moves.
CR_TRANSITIONS: dict[str, tuple[str, ...]] = {
    CRState.DRAFT: (CRState.SUBMITTED, CRState.WITHDRAWN),
    CRState.SUBMITTED: (CRState.IN_REVIEW, CRState.WITHDRAWN),
    CRState.IN_REVIEW: (CRState.APPROVED, CRState.REJECTED, CRState.WITHDRAWN),
    CRState.APPROVED: (CRState.IMPLEMENTED, CRState.WITHDRAWN),
    CRState.REJECTED: (),
    CRState.WITHDRAWN: (CRState.DRAFT,),
    CRState.IMPLEMENTED: (),
}
OPEN_STATES = (CRState.SUBMITTED, CRState.IN_REVIEW, CRState.APPROVED)
REVIEW_STATES = (CRState.SUBMITTED, CRState.IN_REVIEW)


class CRKind(models.TextChoices):
    INITIAL_RELEASE = "initial_release"
    PROMPT_CHANGE = "prompt_change"
    MODEL_CHANGE = "model_change"
    DATASET_CHANGE = "dataset_change"
    SETTINGS_CHANGE = "settings_change"
    COMBINED = "combined"
    NO_CHANGE = "no_change"


class Risk(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ApprovalPolicy(BaseModel):
    """Who must approve a change to a product in a lifecycle stage.

    ``required_roles``: ``[{"role": "reviewer", "quorum": 2}]`` — N approvals from members of the
    product's team holding the role. ``optional_reviewers`` are invited, their decisions are
    recorded but do not count; ``comment_only`` reviewers may only comment. With ``veto``, any
    rejection by a required reviewer rejects the change. ``evaluation_gate`` is judged by the
    evaluations app through ``changes.gates`` (``{"suite": id, "min_pass_rate": 0.9,
    "no_regressions": true, "max_cost_increase": 0.1}``).
    """

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="policies")
    stage = models.CharField(max_length=16, choices=Stage.choices)
    required_roles = models.JSONField(default=list, blank=True)
    optional_reviewers = models.JSONField(default=list, blank=True)
    comment_only = models.JSONField(default=list, blank=True)
    veto = models.BooleanField(default=True)
    evaluation_gate = models.JSONField(null=True, blank=True)

    history = history()

    class Meta:
        ordering = ["product__slug", "stage"]
        verbose_name_plural = "approval policies"
        constraints = [
            models.UniqueConstraint(fields=["product", "stage"], name="policy_unique_stage")
        ]

    def __str__(self) -> str:
        return f"{self.product.slug}/{self.stage}"

    def snapshot(self) -> dict:
        return {
            "stage": self.stage,
            "required_roles": self.required_roles,
            "optional_reviewers": self.optional_reviewers,
            "comment_only": self.comment_only,
            "veto": self.veto,
            "evaluation_gate": self.evaluation_gate,
        }


class ChangeRequest(BaseModel):
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="change_requests")
    title = models.CharField(max_length=200)
    rationale = models.TextField()
    kind = models.CharField(max_length=20, choices=CRKind.choices, default=CRKind.COMBINED)
    risk = models.CharField(max_length=8, choices=Risk.choices, default=Risk.MEDIUM)
    impact = models.JSONField(default=dict, blank=True)
    baseline = models.ForeignKey(
        Release, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    proposed = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="proposals")
    state = models.CharField(max_length=16, choices=CRState.choices, default=CRState.DRAFT)
    fingerprint = models.CharField(max_length=64)
    policy_snapshot = models.JSONField(null=True, blank=True)
    conflicted_user_ids = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    implemented_at = models.DateTimeField(null=True, blank=True)
    implemented_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    history = history()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["product", "state"]), models.Index(fields=["state"])]

    def __str__(self) -> str:
        return f"CR {self.title}"


class Decision(models.TextChoices):
    APPROVE = "approve"
    REJECT = "reject"
    COMMENT = "comment"


class Approval(BaseModel):
    """A reviewer's signed decision, bound to the change request's fingerprint at that moment."""

    change_request = models.ForeignKey(
        ChangeRequest, on_delete=models.CASCADE, related_name="approvals"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewer_username = models.CharField(max_length=150)
    decision = models.CharField(max_length=8, choices=Decision.choices)
    role = models.CharField(max_length=32, help_text="The role the reviewer signed as.")
    required = models.BooleanField(default=False, help_text="Counts toward a required quorum.")
    comment = models.TextField(blank=True)
    fingerprint = models.CharField(max_length=64)
    evidence = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the signature relied on, by gate: e.g. the evaluation runs compared.",
    )

    history = history()

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["change_request", "fingerprint"])]

    def __str__(self) -> str:
        return f"{self.reviewer_username} {self.decision}"

    def is_valid_for(self, change_request: ChangeRequest) -> bool:
        return self.fingerprint == change_request.fingerprint

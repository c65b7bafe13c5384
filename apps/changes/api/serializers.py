"""Shapes of the change-control API. Shapes only: every rule is in ``changes.services``."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.accounts.roles import ROLE_CHOICES
from apps.catalog import selectors as catalog_selectors
from apps.catalog.api.serializers import CreateOnlyMixin
from apps.catalog.models import Product, Stage
from apps.core.api import JSONObjectField, ScopedPrimaryKeyRelatedField
from apps.core.schema import NamedChoiceField
from apps.releases import selectors as release_selectors
from apps.releases.api.serializers import ReleaseDiffSerializer
from apps.releases.diff import release_diff
from apps.releases.models import Release

from .. import gates
from ..models import Approval, ApprovalPolicy, ChangeRequest, CRKind, CRState, Decision, Risk
from ..services import Quorum, policy_in_force, quorum_status


def _username_field() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)


def _release_field(**kwargs) -> ScopedPrimaryKeyRelatedField:
    return ScopedPrimaryKeyRelatedField(
        model=Release, selector=release_selectors.release_list_for, **kwargs
    )


# --- Policies ---------------------------------------------------------------------------------


class RequiredRoleSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=ROLE_CHOICES, help_text="A role of the product's team.")
    quorum = serializers.IntegerField(
        min_value=1, max_value=20, default=1, help_text="How many of them must approve."
    )


class EvaluationGateSerializer(serializers.Serializer):
    """Evaluations a change must pass before it is approved and implemented: on submit, the
    suite's latest version runs against the proposed release (and the baseline, unless it has
    a run on that version already)."""

    suite = serializers.UUIDField(help_text="Evaluation suite id (a suite of the product's team).")
    min_pass_rate = serializers.FloatField(
        min_value=0, max_value=1, default=1.0, help_text="The proposed run's minimum pass rate."
    )
    no_regressions = serializers.BooleanField(
        default=True, help_text="No case that passes on the baseline may fail on the proposed."
    )
    max_cost_increase = serializers.FloatField(
        min_value=0,
        allow_null=True,
        default=None,
        help_text="Most the proposed run may cost over the baseline's, as a fraction (0.1 = +10 "
        "%); null for no limit.",
    )


class PolicyRulesSerializer(serializers.Serializer):
    """Who must approve a change (``required_roles``), who is invited, who may only comment."""

    required_roles = RequiredRoleSerializer(
        many=True,
        required=False,
        help_text="At least one in the validation and production stages.",
    )
    optional_reviewers = serializers.ListField(
        child=serializers.CharField(max_length=150),
        required=False,
        max_length=100,
        help_text="Usernames invited to review; their decisions are recorded, not counted.",
    )
    comment_only = serializers.ListField(
        child=serializers.CharField(max_length=150),
        required=False,
        max_length=100,
        help_text="Usernames who may only comment.",
    )
    veto = serializers.BooleanField(
        required=False, default=True, help_text="A required reviewer's rejection rejects."
    )
    evaluation_gate = EvaluationGateSerializer(required=False, allow_null=True)


class PolicySnapshotSerializer(PolicyRulesSerializer):
    stage = serializers.ChoiceField(choices=Stage.choices)


class ApprovalPolicySerializer(PolicyRulesSerializer, serializers.ModelSerializer):
    product = ScopedPrimaryKeyRelatedField(
        model=Product,
        selector=catalog_selectors.product_list_for,
        help_text="Product id (set on create only).",
    )
    stage = serializers.ChoiceField(
        choices=Stage.choices, help_text="The lifecycle stage it governs (set on create only)."
    )

    class Meta:
        model = ApprovalPolicy
        fields = [
            "id",
            "product",
            "stage",
            "required_roles",
            "optional_reviewers",
            "comment_only",
            "veto",
            "evaluation_gate",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []  # one policy per product and stage: a POST replaces it


class ApprovalPolicyUpdateSerializer(CreateOnlyMixin, PolicyRulesSerializer):
    """PATCH: the fields given replace the policy's; the others are kept."""

    create_only = {
        "product": lambda policy: policy.product_id,
        "stage": lambda policy: policy.stage,
    }

    veto = serializers.BooleanField(required=False)


# --- Change requests -------------------------------------------------------------------------


class ApprovalSerializer(serializers.ModelSerializer):
    """A signed decision (or a comment), bound to the fingerprint it was given for."""

    reviewer = serializers.CharField(source="reviewer_username")
    decision = serializers.ChoiceField(choices=Decision.choices)
    valid = serializers.SerializerMethodField(
        help_text="Whether it was given for the change's current content (fingerprint)."
    )
    evidence = serializers.DictField(
        read_only=True,
        help_text="What a signature relied on, by gate: `evaluation` holds `state`, "
        "`baseline_run`, `proposed_run`, `suite_version` and the gate's figures (`gate`).",
    )

    class Meta:
        model = Approval
        fields = [
            "id",
            "reviewer",
            "decision",
            "role",
            "required",
            "comment",
            "fingerprint",
            "valid",
            "evidence",
            "created_at",
        ]
        read_only_fields = fields

    def get_valid(self, approval: Approval) -> bool:
        # ``change_request`` is the row the approvals were prefetched for: no query.
        return approval.is_valid_for(approval.change_request)


class QuorumRoleSerializer(serializers.Serializer):
    role = serializers.CharField()
    quorum = serializers.IntegerField(help_text="Approvals needed.")
    have = serializers.IntegerField(help_text="Valid approvals given.")
    approvers = serializers.ListField(child=serializers.CharField())


class QuorumSerializer(serializers.Serializer):
    met = serializers.BooleanField()
    roles = QuorumRoleSerializer(many=True)
    vetoed_by = serializers.ListField(child=serializers.CharField())


def quorum_of(cr: ChangeRequest) -> Quorum:
    """``quorum_status`` from the prefetched approvals and product policies (no query a row)."""
    return quorum_status(cr, list(cr.approvals.all()))


class ChangeRequestSerializer(serializers.ModelSerializer):
    product = ScopedPrimaryKeyRelatedField(
        model=Product,
        selector=catalog_selectors.product_list_for,
        help_text="Product id (set on create only).",
    )
    title = serializers.CharField(max_length=200)
    rationale = serializers.CharField(max_length=20_000, help_text="Why the change is needed.")
    kind = serializers.ChoiceField(
        choices=CRKind.choices, read_only=True, help_text="Derived from the diff."
    )
    risk = serializers.ChoiceField(choices=Risk.choices, required=False)
    impact = JSONObjectField(
        required=False, help_text="Which published APIs and subscribers are affected."
    )
    baseline = _release_field(
        required=False,
        allow_null=True,
        help_text="The release being replaced; by default the product's released release.",
    )
    proposed = _release_field(help_text="The draft release to release.")
    state = serializers.ChoiceField(choices=CRState.choices, read_only=True)
    policy_snapshot = PolicySnapshotSerializer(
        read_only=True, allow_null=True, help_text="The policy in force, copied at submission."
    )
    requested_by = _username_field()
    implemented_by = _username_field()
    approvals = ApprovalSerializer(many=True, read_only=True)
    quorum = serializers.SerializerMethodField()

    class Meta:
        model = ChangeRequest
        fields = [
            "id",
            "product",
            "title",
            "rationale",
            "kind",
            "risk",
            "impact",
            "baseline",
            "proposed",
            "state",
            "fingerprint",
            "policy_snapshot",
            "requested_by",
            "submitted_at",
            "decided_at",
            "implemented_at",
            "implemented_by",
            "approvals",
            "quorum",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "kind",
            "state",
            "fingerprint",
            "policy_snapshot",
            "requested_by",
            "submitted_at",
            "decided_at",
            "implemented_at",
            "implemented_by",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(QuorumSerializer)
    def get_quorum(self, cr: ChangeRequest) -> dict:
        return QuorumSerializer(quorum_of(cr)).data


class GateVerdictSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The gate, e.g. `evaluation`.")
    state = NamedChoiceField(
        enum_name="GateStateEnum",
        choices=[gates.NOT_STARTED, gates.PENDING, gates.PASSED, gates.FAILED],
        help_text="not_started (a draft, or no run yet), pending, passed or failed.",
    )
    required = serializers.BooleanField()
    passed = serializers.BooleanField()
    pending = serializers.BooleanField()
    reasons = serializers.ListField(
        child=serializers.CharField(), help_text="Why it has not passed, one sentence each."
    )
    message = serializers.CharField(
        source="summary", allow_blank=True, help_text="Why approve and implement are refused."
    )
    evidence = serializers.DictField(help_text="The runs and figures the verdict rests on.")


class ChangeRequestDetailSerializer(ChangeRequestSerializer):
    """One change request, with the diff of its proposed release against its baseline and the
    verdicts of its gates (approve and implement are refused while one has not passed)."""

    diff = serializers.SerializerMethodField()
    gates = serializers.SerializerMethodField()

    class Meta(ChangeRequestSerializer.Meta):
        fields = [*ChangeRequestSerializer.Meta.fields, "diff", "gates"]

    @extend_schema_field(ReleaseDiffSerializer)
    def get_diff(self, cr: ChangeRequest) -> dict:
        return ReleaseDiffSerializer(release_diff(cr.baseline, cr.proposed)).data

    @extend_schema_field(GateVerdictSerializer(many=True))
    def get_gates(self, cr: ChangeRequest) -> list[dict]:
        policy = cr.policy_snapshot or policy_in_force(cr.product)
        verdicts = [v for v in gates.gate_verdicts(cr, policy) if v.required]
        return GateVerdictSerializer(verdicts, many=True).data


class ChangeRequestUpdateSerializer(CreateOnlyMixin, serializers.Serializer):
    """PATCH of a draft (or withdrawn) request; the fingerprint follows the content."""

    create_only = {"product": lambda cr: cr.product_id}

    title = serializers.CharField(max_length=200, required=False)
    rationale = serializers.CharField(max_length=20_000, required=False)
    risk = serializers.ChoiceField(choices=Risk.choices, required=False)
    impact = JSONObjectField(required=False)
    baseline = _release_field(required=False, allow_null=True)
    proposed = _release_field(required=False)


# --- Actions ---------------------------------------------------------------------------------


def _comment_field(help_text: str) -> serializers.CharField:
    return serializers.CharField(
        required=False, allow_blank=True, max_length=20_000, help_text=help_text
    )


@extend_schema_field(OpenApiTypes.PASSWORD)
class PasswordField(serializers.CharField):
    """A secret typed by a person: write-only, not trimmed, never in a response."""

    def __init__(self, **kwargs):
        kwargs.update(write_only=True, trim_whitespace=False, style={"input_type": "password"})
        kwargs.setdefault("max_length", 4096)
        super().__init__(**kwargs)


class SignatureSerializer(serializers.Serializer):
    """Approve: a signature, given with the reviewer's own password."""

    comment = _comment_field("Optional when approving.")
    password = PasswordField(
        help_text="Your account password: it signs the decision. Never stored or returned."
    )


class RejectSerializer(SignatureSerializer):
    """Reject: a signature with the reviewer's own password, and the reason."""

    comment = _comment_field("Why you reject the change (required).")


class WithdrawSerializer(serializers.Serializer):
    comment = _comment_field("Why it is withdrawn (kept in the audit trail).")


class CommentSerializer(serializers.Serializer):
    comment = serializers.CharField(
        allow_blank=True, max_length=20_000, help_text="A review comment (not a signature)."
    )

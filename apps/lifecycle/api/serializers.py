"""Shapes of the lifecycle API. Shapes only: every rule is in ``lifecycle.services``.

Input shapes type what a client sends (so bad types are a 400 before any service runs); the
services then check the content (required parts, known suites, the gate, the signatures).
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.catalog import selectors as catalog_selectors
from apps.catalog.models import ModelVersion, RiskClass, Stage
from apps.changes.api.serializers import PasswordField
from apps.core.api import ScopedPrimaryKeyRelatedField
from apps.core.schema import NamedChoiceField

from .. import gates, metrics
from ..models import (
    Assessment,
    BriefStatus,
    GateDefinition,
    LifecycleRequest,
    ProductBrief,
    RequestKind,
    RequestState,
)

# Postgres' integer: the assessment's volume columns are PositiveIntegerField.
INT32_MAX = 2_147_483_647
TEXT_LIMIT = 20_000
STAGES = ", ".join(Stage.values)


def _username_field() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)


def _text(limit: int = TEXT_LIMIT, **kwargs) -> serializers.CharField:
    kwargs.setdefault("required", False)
    kwargs.setdefault("allow_blank", True)
    return serializers.CharField(max_length=limit, **kwargs)


class StrictSerializer(serializers.Serializer):
    """A nested object that refuses keys it does not know (rather than dropping them)."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {
                        "non_field_errors": [
                            f"Unknown key(s) {', '.join(unknown)}; known: {', '.join(self.fields)}."
                        ]
                    }
                )
        return super().to_internal_value(data)


class ProductRefField(serializers.SlugField):
    """A product named by its id or its slug (looked up by the view, in the user's scope)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 64)
        kwargs.setdefault(
            "help_text",
            "Product id or slug. A product outside your teams answers 404, like a missing one.",
        )
        super().__init__(**kwargs)


class ProductRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    slug = serializers.SlugField(read_only=True)


class APIRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(read_only=True)
    slug = serializers.SlugField(read_only=True)


# --- the content of a brief --------------------------------------------------------------------


class UserStorySerializer(StrictSerializer):
    as_a = serializers.CharField(max_length=1000, help_text="As a …")
    i_want = serializers.CharField(max_length=1000, help_text="I want …")
    so_that = serializers.CharField(max_length=1000, help_text="so that …")


class DataStrategySerializer(StrictSerializer):
    sources = _text(5000, help_text="Where the data comes from.")
    consent = _text(5000, help_text="On what basis it may be used.")
    pii_handling = _text(5000, help_text="How personal data is handled.")


class ThresholdField(serializers.FloatField):
    """A number kept as the client wrote it (``2000`` stays an integer), so a brief's content
    hash is the same whether it was written over the API or on its page."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if isinstance(data, int) and not isinstance(data, bool) and abs(data) <= 2**53:
            return data
        return value

    def to_representation(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return super().to_representation(value)


class TargetMetricSerializer(StrictSerializer):
    """A target: `pass_rate` (0..1, of an evaluation suite of the owner team, named by its
    slug), `p95_latency_ms`, `error_rate` (0..1) or `cost_per_1k_calls` (last 7 days of calls).
    """

    metric = NamedChoiceField(enum_name="TargetMetricEnum", choices=list(metrics.METRICS))
    op = NamedChoiceField(
        enum_name="TargetOpEnum",
        choices=list(metrics.OPS),
        required=False,
        help_text="Default: `>=` for a pass rate, `<=` for the others.",
    )
    threshold = ThresholdField()
    suite = serializers.SlugField(
        max_length=64, required=False, help_text="With `pass_rate`: the suite's slug."
    )


class ProductBriefSerializer(serializers.ModelSerializer):
    """One version of a product's brief (immutable; only its status moves)."""

    product = ProductRefSerializer(read_only=True)
    status = NamedChoiceField(
        enum_name="BriefStatusEnum",
        choices=BriefStatus.choices,
        read_only=True,
        help_text="in_force; proposed (after design: awaiting a signed brief request); "
        "superseded, rejected or withdrawn.",
    )
    user_stories = UserStorySerializer(many=True, read_only=True)
    data_strategy = DataStrategySerializer(read_only=True)
    target_metrics = TargetMetricSerializer(many=True, read_only=True)
    created_by = _username_field()

    class Meta:
        model = ProductBrief
        fields = [
            "id",
            "product",
            "version",
            "status",
            "problem_statement",
            "target_users",
            "user_stories",
            "intended_uses",
            "out_of_scope_uses",
            "data_strategy",
            "target_metrics",
            "changelog",
            "content_hash",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


class ProductBriefCreateSerializer(serializers.Serializer):
    """A new version of the brief: in force at once up to the design stage, after it proposed
    with a brief request that someone else signs."""

    product = ProductRefField()
    problem_statement = serializers.CharField(max_length=TEXT_LIMIT)
    target_users = _text()
    user_stories = UserStorySerializer(many=True, required=False)
    intended_uses = _text()
    out_of_scope_uses = _text()
    data_strategy = DataStrategySerializer(required=False)
    target_metrics = TargetMetricSerializer(many=True, required=False)
    changelog = _text(5000, help_text="What changed since the last version.")


# --- the assessment ----------------------------------------------------------------------------


class RiskSerializer(StrictSerializer):
    title = serializers.CharField(max_length=300)
    likelihood = serializers.IntegerField(min_value=1, max_value=5, help_text="1 (low) to 5.")
    severity = serializers.IntegerField(min_value=1, max_value=5, help_text="1 (low) to 5.")
    mitigation = _text(5000)


def _volume(help_text: str) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=0, max_value=INT32_MAX, required=False, default=0, help_text=help_text
    )


class AssessmentSerializer(serializers.ModelSerializer):
    """The feasibility and impact assessment of a product, one per product (history kept)."""

    product = ProductRefSerializer(read_only=True)
    risks = RiskSerializer(many=True, read_only=True)
    affected_groups = serializers.ListField(child=serializers.CharField(), read_only=True)
    model_version = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    updated_by = _username_field()

    class Meta:
        model = Assessment
        fields = [
            "id",
            "product",
            "technical",
            "ethical",
            "economic",
            "risks",
            "affected_groups",
            "model_version",
            "calls_per_month",
            "tokens_in_per_call",
            "tokens_out_per_call",
            "updated_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AssessmentDetailSerializer(AssessmentSerializer):
    """The assessment with its economic estimate (priced with the model version's provider
    price table; one read of the price table, so lists leave it out)."""

    monthly_estimate = serializers.SerializerMethodField(
        help_text="Expected cost a month (calls x tokens x price), in the price table's "
        "currency; null without a model version, a volume or a price."
    )

    class Meta(AssessmentSerializer.Meta):
        fields = [*AssessmentSerializer.Meta.fields, "monthly_estimate"]
        read_only_fields = fields

    @extend_schema_field(serializers.DecimalField(max_digits=20, decimal_places=2, allow_null=True))
    def get_monthly_estimate(self, obj: Assessment) -> str | None:
        from ..services import monthly_estimate

        value = monthly_estimate(obj)
        return None if value is None else str(value)


class AssessmentWriteSerializer(serializers.Serializer):
    """Create or replace the assessment of ``product`` (the fields left out are cleared)."""

    product = ProductRefField()
    technical = _text(help_text="Technical feasibility.")
    ethical = _text(help_text="Ethical feasibility and impact.")
    economic = _text(help_text="Economic feasibility.")
    risks = RiskSerializer(many=True, required=False)
    affected_groups = serializers.ListField(
        child=serializers.CharField(max_length=300, allow_blank=True),
        required=False,
        max_length=200,
        help_text="Who the product affects; blank names are dropped.",
    )
    model_version = ScopedPrimaryKeyRelatedField(
        model=ModelVersion,
        selector=catalog_selectors.model_version_list_for,
        required=False,
        allow_null=True,
        help_text="Model version of the product's team that prices the estimate (optional).",
    )
    calls_per_month = _volume("Expected calls a month.")
    tokens_in_per_call = _volume("Expected input tokens a call.")
    tokens_out_per_call = _volume("Expected output tokens a call.")


# --- gates -------------------------------------------------------------------------------------


class GateCheckSerializer(serializers.Serializer):
    """One entry criterion of a stage, checked now (or when a request was decided)."""

    code = serializers.CharField(help_text="The criterion, such as `brief`.")
    label = serializers.CharField()
    met = serializers.BooleanField()
    detail = serializers.CharField(help_text="What is there, or what to do.")


class ChecklistQuerySerializer(serializers.Serializer):
    product = ProductRefField()
    to_stage = NamedChoiceField(
        enum_name="StageEnum",
        choices=Stage.choices,
        help_text="The stage to enter.",
        error_messages={"invalid_choice": f"“{{input}}” is not a stage; one of {STAGES}."},
    )


class ProductQuerySerializer(serializers.Serializer):
    product = ProductRefField()


CRITERIA_HELP = "Criterion codes: " + ", ".join(f"`{code}`" for code in gates.CRITERIA) + "."
SIGNERS_HELP = f"Roles whose signature moves a product there: {', '.join(gates.SIGNER_ROLES)}."


def _criteria_field(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=NamedChoiceField(enum_name="GateCriterionEnum", choices=list(gates.CRITERIA)),
        max_length=len(gates.CRITERIA) * 2,
        help_text=CRITERIA_HELP,
        **kwargs,
    )


def _signers_field(**kwargs) -> serializers.ListField:
    return serializers.ListField(
        child=NamedChoiceField(enum_name="GateSignerRoleEnum", choices=list(gates.SIGNER_ROLES)),
        min_length=1,
        max_length=len(gates.SIGNER_ROLES) * 2,
        help_text=SIGNERS_HELP,
        **kwargs,
    )


class GateDefinitionSerializer(serializers.ModelSerializer):
    """The entry criteria of a stage for products of a risk class, and who signs the move."""

    risk_class = serializers.ChoiceField(choices=RiskClass.choices, help_text="Set on create only.")
    stage = serializers.ChoiceField(choices=Stage.choices, help_text="Set on create only.")
    criteria = _criteria_field()
    signer_roles = _signers_field()

    class Meta:
        model = GateDefinition
        fields = [
            "id",
            "risk_class",
            "stage",
            "criteria",
            "signer_roles",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []  # one per risk class and stage: a POST replaces it


class GateDefinitionUpdateSerializer(serializers.Serializer):
    """PATCH: the fields given replace the gate's; the others are kept."""

    criteria = _criteria_field(required=False)
    signer_roles = _signers_field(required=False)
    risk_class = serializers.ChoiceField(
        choices=RiskClass.choices, required=False, help_text="Cannot change (create only)."
    )
    stage = serializers.ChoiceField(
        choices=Stage.choices, required=False, help_text="Cannot change (create only)."
    )


# --- requests ----------------------------------------------------------------------------------


class LifecycleRequestSerializer(serializers.ModelSerializer):
    """A request to move a product to a stage (``kind`` stage) or to bring a brief version into
    force (``kind`` brief), signed by someone other than the requester."""

    product = ProductRefSerializer(read_only=True)
    kind = NamedChoiceField(
        enum_name="LifecycleRequestKindEnum", choices=RequestKind.choices, read_only=True
    )
    from_stage = serializers.CharField(read_only=True, help_text="The product's stage then.")
    to_stage = serializers.CharField(
        read_only=True, help_text="The stage asked for; blank for a brief request."
    )
    brief = serializers.IntegerField(
        source="brief.version",
        read_only=True,
        allow_null=True,
        help_text="The brief version a brief request brings into force.",
    )
    successor = APIRefSerializer(
        read_only=True, allow_null=True, help_text="With a deprecation: the API to move to."
    )
    state = NamedChoiceField(
        enum_name="LifecycleRequestStateEnum", choices=RequestState.choices, read_only=True
    )
    requested_by = _username_field()
    decided_by = _username_field()
    evidence = GateCheckSerializer(
        many=True, read_only=True, help_text="The checklist the approval was signed on."
    )

    class Meta:
        model = LifecycleRequest
        fields = [
            "id",
            "product",
            "kind",
            "from_stage",
            "to_stage",
            "brief",
            "sunset_at",
            "migration_note",
            "successor",
            "comment",
            "state",
            "fingerprint",
            "requested_by",
            "decided_by",
            "decided_role",
            "decision_comment",
            "decided_at",
            "evidence",
            "created_at",
        ]
        read_only_fields = fields


class StageRequestCreateSerializer(serializers.Serializer):
    """Ask to move ``product`` to ``to_stage``: refused (409 ``gate_unmet``, naming each unmet
    criterion) until the stage's entry criteria are met."""

    product = ProductRefField()
    to_stage = NamedChoiceField(
        enum_name="StageEnum",
        choices=Stage.choices,
        error_messages={"invalid_choice": f"“{{input}}” is not a stage; one of {STAGES}."},
    )
    comment = _text(5000, help_text="Why (it is part of what the signer signs).")
    sunset_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="With a deprecation: when the product's APIs stop answering.",
    )
    migration_note = _text(5000, help_text="With a deprecation: what subscribers do next.")
    successor = serializers.SlugField(
        max_length=64,
        required=False,
        allow_null=True,
        help_text="With a deprecation: a published API (id or slug) subscribers move to.",
    )


class LifecycleSignatureSerializer(serializers.Serializer):
    """Approve: a signature with your own password (and an optional comment)."""

    password = PasswordField(
        help_text="Your account password: it signs the decision. Never stored or returned."
    )
    comment = _text(5000, help_text="Optional when approving.")


class LifecycleRejectSerializer(LifecycleSignatureSerializer):
    """Reject: a signature with your own password, and why (required)."""

    comment = _text(5000, help_text="Why you reject the move (required).")


# --- target metrics ----------------------------------------------------------------------------


class MeasurementSerializer(serializers.Serializer):
    target = TargetMetricSerializer(help_text="The target of the brief in force.")
    label = serializers.CharField(help_text="The target in words, such as `Pass rate ≥ 0.9`.")
    value = serializers.FloatField(
        allow_null=True, help_text="The measured value; null: nothing measured yet."
    )
    met = serializers.BooleanField(allow_null=True, help_text="null: not measured yet.")
    source = NamedChoiceField(
        enum_name="MetricSourceEnum",
        choices=sorted({spec["source"] for spec in metrics.METRICS.values()}),
        help_text="`evaluation`: the suite's runs; `gateway`: the product's calls.",
    )
    detail = serializers.CharField(allow_blank=True)
    trend = serializers.ListField(
        child=serializers.FloatField(),
        help_text="The last runs' pass rates, or one point a day, oldest first.",
    )

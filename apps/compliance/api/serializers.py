"""Serializers of the compliance API: incidents and the time-travel states."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.catalog.selectors import product_list_for
from apps.core.api import ScopedPrimaryKeyRelatedField
from apps.releases.selectors import release_list_for

from ..models import Incident, IncidentStatus, Severity
from ..services import SEVERITY_ALIASES

SEVERITY_HELP = "sev1 (critical) … sev4 (low); `critical`, `high`, `medium`, `low` are accepted."


class SeverityField(serializers.ChoiceField):
    def __init__(self, **kwargs):
        super().__init__(
            choices=[*Severity.values, *SEVERITY_ALIASES], help_text=SEVERITY_HELP, **kwargs
        )

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        return SEVERITY_ALIASES.get(value, value)

    def to_representation(self, value):
        return value


class IncidentSerializer(serializers.ModelSerializer):
    product = ScopedPrimaryKeyRelatedField(
        model=Incident._meta.get_field("product").related_model,
        selector=product_list_for,
        help_text="Product id (set on create only).",
    )
    release = ScopedPrimaryKeyRelatedField(
        model=Incident._meta.get_field("release").related_model,
        selector=release_list_for,
        required=False,
        allow_null=True,
        help_text="Release id of the product (optional).",
    )
    title = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    actions_taken = serializers.CharField(required=False, allow_blank=True, max_length=20_000)
    severity = SeverityField(required=False)
    status = serializers.ChoiceField(
        choices=IncidentStatus.choices,
        required=False,
        help_text="On update: open → mitigated → resolved → closed (mitigated and resolved may "
        "be reopened); a move records `incident.status_changed`. New incidents are open.",
    )
    occurred_at = serializers.DateTimeField(required=False)
    resolved_at = serializers.DateTimeField(required=False, allow_null=True)
    note = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=5000,
        help_text="With a status move: appended to `actions_taken`.",
    )
    filed_by = serializers.SerializerMethodField()

    class Meta:
        model = Incident
        fields = [
            "id",
            "product",
            "release",
            "title",
            "description",
            "actions_taken",
            "severity",
            "status",
            "occurred_at",
            "resolved_at",
            "closed_at",
            "filed_by",
            "note",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "closed_at", "created_at", "updated_at"]

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_filed_by(self, obj) -> str | None:
        return obj.filed_by.get_username() if obj.filed_by_id and obj.filed_by else None


# --- time travel -------------------------------------------------------------------------------


class LiveReleaseSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    version = serializers.CharField()
    fingerprint = serializers.CharField()
    status = serializers.CharField(help_text="The release's status at the instant.")
    effective_from = serializers.DateTimeField(source="release.effective_from")
    effective_to = serializers.DateTimeField(source="release.effective_to", allow_null=True)


class LiveVersionRefSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="pk")
    label = serializers.CharField(source="__str__")
    version = serializers.IntegerField()
    content_hash = serializers.CharField()


class LiveModelVersionRefSerializer(LiveVersionRefSerializer):
    provider_model = serializers.CharField()


class LiveProductSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    slug = serializers.CharField()
    name = serializers.CharField()
    stage = serializers.CharField()
    risk_class = serializers.CharField()
    owner_team = serializers.CharField(help_text="Team slug.")


class LivePlanSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    slug = serializers.CharField()
    name = serializers.CharField()
    requests_per_minute = serializers.IntegerField()
    tokens_per_month = serializers.IntegerField(allow_null=True)
    approval_required = serializers.BooleanField()
    active = serializers.BooleanField()


class LiveAPISerializer(serializers.Serializer):
    id = serializers.UUIDField()
    slug = serializers.CharField()
    name = serializers.CharField()
    status = serializers.CharField(help_text="The API's status at the instant.")
    follows = serializers.ChoiceField(
        choices=["pinned", "product"],
        help_text="`pinned`: a pinned release; `product`: the product's live release.",
    )
    pinned_release = serializers.UUIDField(source="pinned_release_id", allow_null=True)
    serves = LiveReleaseSerializer(allow_null=True, help_text="The release it served then.")
    plans = LivePlanSerializer(many=True)


class LiveIncidentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    severity = serializers.CharField()
    status = serializers.CharField(help_text="Its status now.")
    occurred_at = serializers.DateTimeField()


class LiveStateSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    product = LiveProductSerializer(help_text="The product as it was at the instant.")
    release = LiveReleaseSerializer(allow_null=True, help_text="The release live then, or null.")
    prompt_version = LiveVersionRefSerializer(allow_null=True)
    model_version = LiveModelVersionRefSerializer(allow_null=True)
    fallbacks = LiveModelVersionRefSerializer(many=True)
    dataset_versions = LiveVersionRefSerializer(many=True)
    settings = serializers.DictField(help_text="The release's gateway settings.")
    apis = LiveAPISerializer(many=True, help_text="The product's published APIs then.")
    incidents = LiveIncidentSerializer(many=True, help_text="Incidents unresolved then.")


class APILiveStateSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    api = LiveAPISerializer()
    product = LiveProductSerializer()
    live = LiveStateSerializer(
        allow_null=True, help_text="The full state of the release it served (null: none)."
    )

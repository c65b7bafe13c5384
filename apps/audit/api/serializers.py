"""Shapes of the audit trail's REST API: events (read-only) and an object's history."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..models import AuditEvent


@extend_schema_field(
    {
        "oneOf": [{"type": "object", "additionalProperties": True}, {"type": "array"}],
        "nullable": True,
        "description": "JSON as recorded: the fields before (or after) the event.",
    }
)
class JSONValueField(serializers.JSONField):
    pass


class AuditEventSerializer(serializers.ModelSerializer):
    """One event of the append-only, hash-chained trail."""

    actor = serializers.CharField(
        source="actor_username", read_only=True, help_text="Username at the time of the event."
    )
    product = serializers.UUIDField(
        source="product_id", read_only=True, allow_null=True, help_text="Product id."
    )
    before = JSONValueField(read_only=True)
    after = JSONValueField(read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "seq",
            "at",
            "actor",
            "verb",
            "object_type",
            "object_id",
            "object_repr",
            "product",
            "before",
            "after",
            "ip_address",
            "request_id",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


@extend_schema_field(OpenApiTypes.ANY)
class AnyValueField(serializers.Field):
    """A field's value as JSON (strings, numbers, objects...), null for nothing."""

    def to_representation(self, value):
        from apps.core.hashing import to_jsonable

        return to_jsonable(value)


class FieldChangeSerializer(serializers.Serializer):
    field = serializers.CharField(help_text="The model field's name.")
    label = serializers.CharField(help_text="Its verbose name.")
    old = AnyValueField(allow_null=True, help_text="Null on a creation.")
    new = AnyValueField(allow_null=True)


class HistoryVersionSerializer(serializers.Serializer):
    history_id = serializers.CharField()
    at = serializers.DateTimeField()
    who = serializers.CharField(help_text="Username of who saved this version (`system`: none).")
    type = serializers.ChoiceField(
        choices=["+", "~", "-"], help_text="`+` created, `~` changed, `-` deleted."
    )
    type_label = serializers.CharField(help_text="`created`, `changed` or `deleted`.")
    reason = serializers.CharField(allow_blank=True)
    changes = FieldChangeSerializer(many=True)


class ObjectHistorySerializer(serializers.Serializer):
    object_type = serializers.CharField()
    object_id = serializers.CharField()
    verbose_name = serializers.CharField()
    title = serializers.CharField(help_text="The object's name at its newest version.")
    exists = serializers.BooleanField(help_text="False once the object was deleted.")
    truncated = serializers.BooleanField(help_text="True when only the newest versions are shown.")
    versions = HistoryVersionSerializer(many=True, help_text="Newest first.")
    events = AuditEventSerializer(
        many=True, help_text="Audit events about the object, newest first."
    )


class HistoryQuerySerializer(serializers.Serializer):
    object_type = serializers.CharField(
        max_length=100, help_text="`app_label.model`, such as `catalog.product`."
    )
    object_id = serializers.CharField(max_length=64, help_text="The object's id.")

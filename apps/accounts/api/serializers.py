"""Shapes of the accounts API: the current user, teams and personal access tokens."""

from rest_framework import serializers

from ..models import PersonalAccessToken, Team

TOKEN_STATUSES = [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]


class TeamSerializer(serializers.ModelSerializer):
    class Meta:
        model = Team
        fields = ["id", "slug", "name", "description"]
        read_only_fields = fields


class MyTeamSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    slug = serializers.SlugField()
    name = serializers.CharField()
    roles = serializers.ListField(
        child=serializers.CharField(), help_text="The user's roles in this team."
    )


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    display_name = serializers.CharField(allow_blank=True)
    email = serializers.CharField(allow_blank=True)
    is_superuser = serializers.BooleanField()
    roles = serializers.ListField(
        child=serializers.CharField(),
        help_text="Every role the user holds in any team: product_manager, reviewer, "
        "developer, auditor, admin.",
    )
    teams = MyTeamSerializer(many=True)


class TokenSerializer(serializers.ModelSerializer):
    """A personal access token as listed: the public prefix only, never the secret."""

    status = serializers.ChoiceField(choices=TOKEN_STATUSES, read_only=True)

    class Meta:
        model = PersonalAccessToken
        fields = [
            "id",
            "name",
            "prefix",
            "status",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = fields


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="When it stops working; by default after the configured number of days.",
    )


class NewTokenSerializer(TokenSerializer):
    """The create response: the one time the secret ``key`` is shown."""

    key = serializers.SerializerMethodField(
        help_text="The secret: send it as `Authorization: Bearer <key>`. Shown only once."
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "key"]
        read_only_fields = fields

    def get_key(self, obj) -> str:
        return self.context["key"]

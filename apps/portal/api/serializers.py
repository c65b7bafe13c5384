"""Shapes of the portal API. Shapes only: every rule is in ``portal.services``.

A key's secret appears once, as ``key``, in the create and rotate responses
(``NewAPIKeySerializer``); every other read shows only its ``prefix``.
"""

from __future__ import annotations

import uuid

from rest_framework import serializers

from apps.catalog.models import Product
from apps.catalog.selectors import product_list_for
from apps.core.api import ScopedPrimaryKeyRelatedField
from apps.core.schema import NamedChoiceField
from apps.releases.models import Release
from apps.releases.selectors import release_list_for

from .. import selectors
from ..models import (
    APIKey,
    APIStatus,
    Application,
    Plan,
    PublishedAPI,
    Subscription,
    SubscriptionState,
)


def _username() -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


# --- Published APIs --------------------------------------------------------------------------


class PublishedAPISerializer(serializers.ModelSerializer):
    """A product exposed to developers. ``slug`` is the gateway's ``model``."""

    slug = serializers.SlugField(max_length=64, help_text="The gateway's `model` (set on create).")
    name = serializers.CharField(max_length=150)
    product = ScopedPrimaryKeyRelatedField(
        model=Product, selector=product_list_for, help_text="Product id (set on create)."
    )
    product_slug = serializers.CharField(source="product.slug", read_only=True)
    release = ScopedPrimaryKeyRelatedField(
        model=Release,
        selector=release_list_for,
        required=False,
        allow_null=True,
        help_text="A pinned release id; null: the API follows the product's current released "
        "release.",
    )
    status = NamedChoiceField(
        enum_name="PublishedAPIStatusEnum", choices=APIStatus.choices, read_only=True
    )
    summary = serializers.CharField(max_length=300, required=False, allow_blank=True)
    docs = serializers.CharField(
        max_length=100_000, required=False, allow_blank=True, help_text="Markdown."
    )
    successor = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    created_by = _username()

    class Meta:
        model = PublishedAPI
        fields = [
            "id",
            "slug",
            "name",
            "product",
            "product_slug",
            "release",
            "status",
            "summary",
            "docs",
            "published_at",
            "deprecated_at",
            "sunset_at",
            "migration_note",
            "successor",
            "retired_at",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = [
            "id",
            "published_at",
            "deprecated_at",
            "sunset_at",
            "migration_note",
            "retired_at",
            "created_at",
            "updated_at",
        ]
        validators = []  # uniqueness is checked by the service (409)


class PublishedAPIUpdateSerializer(serializers.Serializer):
    """PATCH: the descriptive fields, the pinned release (null: follow the current one) and
    the successor. ``slug`` and ``product`` are set on create; ``status`` moves by actions."""

    name = serializers.CharField(max_length=150, required=False)
    summary = serializers.CharField(max_length=300, required=False, allow_blank=True)
    docs = serializers.CharField(max_length=100_000, required=False, allow_blank=True)
    release = ScopedPrimaryKeyRelatedField(
        model=Release, selector=release_list_for, required=False, allow_null=True
    )
    successor = ScopedPrimaryKeyRelatedField(
        model=PublishedAPI, selector=selectors.api_list_for, required=False, allow_null=True
    )


class APIDeprecateSerializer(serializers.Serializer):
    sunset_at = serializers.DateTimeField(help_text="When the API stops answering (future).")
    migration_note = serializers.CharField(
        max_length=10_000, help_text="What subscribers do next (they receive it by e-mail)."
    )
    successor = ScopedPrimaryKeyRelatedField(
        model=PublishedAPI,
        selector=selectors.api_list_for,
        required=False,
        allow_null=True,
        help_text="A published API that replaces this one.",
    )


# --- Plans -----------------------------------------------------------------------------------


class PlanSerializer(serializers.ModelSerializer):
    """What a subscription to an API gets: a rate limit, an optional monthly token quota, and
    whether a request needs approval."""

    api = ScopedPrimaryKeyRelatedField(
        model=PublishedAPI, selector=selectors.api_list_for, help_text="API id (set on create)."
    )
    api_slug = serializers.CharField(source="api.slug", read_only=True)
    slug = serializers.SlugField(max_length=64)
    name = serializers.CharField(max_length=100)
    requests_per_minute = serializers.IntegerField(min_value=1, max_value=1_000_000)
    tokens_per_month = serializers.IntegerField(
        min_value=1,
        max_value=2**62,
        required=False,
        allow_null=True,
        help_text="Null: no monthly token quota.",
    )
    approval_required = serializers.BooleanField(required=False, default=True)
    terms = serializers.CharField(max_length=20_000, required=False, allow_blank=True)
    active = serializers.BooleanField(read_only=True)
    created_by = _username()

    class Meta:
        model = Plan
        fields = [
            "id",
            "api",
            "api_slug",
            "slug",
            "name",
            "requests_per_minute",
            "tokens_per_month",
            "approval_required",
            "terms",
            "active",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []


class PlanUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    requests_per_minute = serializers.IntegerField(min_value=1, max_value=1_000_000, required=False)
    tokens_per_month = serializers.IntegerField(
        min_value=1, max_value=2**62, required=False, allow_null=True
    )
    approval_required = serializers.BooleanField(required=False)
    terms = serializers.CharField(max_length=20_000, required=False, allow_blank=True)
    active = serializers.BooleanField(required=False, help_text="false: no new subscriptions.")
    approve_pending = serializers.BooleanField(
        required=False,
        allow_null=True,
        help_text="When switching `approval_required` off while requests are pending: true "
        "approves them all, false leaves them pending; not given is a 409 `pending_backlog`.",
    )


# --- Applications ----------------------------------------------------------------------------


class ApplicationSerializer(serializers.ModelSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=5_000, required=False, allow_blank=True)
    owner = _username()

    class Meta:
        model = Application
        fields = ["id", "name", "description", "owner", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        validators = []


class ApplicationUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(max_length=5_000, required=False, allow_blank=True)


# --- Subscriptions ---------------------------------------------------------------------------


class SubscriptionSerializer(serializers.ModelSerializer):
    state = NamedChoiceField(
        enum_name="SubscriptionStateEnum", choices=SubscriptionState.choices, read_only=True
    )
    application = serializers.PrimaryKeyRelatedField(read_only=True)
    application_name = serializers.CharField(source="application.name", read_only=True)
    owner = serializers.CharField(source="application.owner.username", read_only=True)
    api = serializers.PrimaryKeyRelatedField(read_only=True)
    api_slug = serializers.CharField(source="api.slug", read_only=True)
    plan = serializers.PrimaryKeyRelatedField(read_only=True)
    plan_slug = serializers.CharField(source="plan.slug", read_only=True)
    requested_by = _username()
    decided_by = _username()

    class Meta:
        model = Subscription
        fields = [
            "id",
            "application",
            "application_name",
            "owner",
            "api",
            "api_slug",
            "plan",
            "plan_slug",
            "state",
            "justification",
            "requested_by",
            "decided_by",
            "decided_at",
            "decision_reason",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class SubscriptionCreateSerializer(serializers.Serializer):
    """Ask for a plan for one of your applications: ``plan`` is a plan id, or a plan slug
    with ``api`` (the API's id or slug)."""

    application = ScopedPrimaryKeyRelatedField(
        model=Application, selector=selectors.application_list_for, help_text="Application id."
    )
    plan = serializers.CharField(
        max_length=64, help_text="Plan id, or plan slug (then give `api` too)."
    )
    api = serializers.CharField(
        max_length=64, required=False, help_text="API id or slug (with a plan slug)."
    )
    justification = serializers.CharField(max_length=5_000, required=False, allow_blank=True)

    def validate(self, attrs):
        user = self.context["request"].user
        plans = selectors.plan_list_for(user=user)
        plan_ref, api_ref = attrs.pop("plan"), attrs.pop("api", None)
        if api_ref:
            api_q = {"api_id": api_ref} if _is_uuid(api_ref) else {"api__slug": api_ref}
            plans = plans.filter(**api_q)
        if _is_uuid(plan_ref):
            plan = plans.filter(pk=plan_ref).first()
        elif not api_ref:
            raise serializers.ValidationError(
                {"api": ["With a plan slug, give the API (its id or slug)."]}
            )
        else:
            plan = plans.filter(slug=plan_ref).first()
        if plan is None:
            raise serializers.ValidationError({"plan": [f"No plan {plan_ref} of that API."]})
        attrs["plan"] = plan
        return attrs


class SubscriptionApproveSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=5_000, required=False, allow_blank=True)


class SubscriptionReasonSerializer(serializers.Serializer):
    reason = serializers.CharField(
        max_length=5_000, required=False, allow_blank=True, help_text="Required: say why."
    )


# --- API keys --------------------------------------------------------------------------------


class APIKeySerializer(serializers.ModelSerializer):
    """An API key as later reads show it: its ``prefix``, never its secret."""

    application = serializers.PrimaryKeyRelatedField(read_only=True)
    status = serializers.SerializerMethodField(
        help_text="active, rotating (in its grace period), expired or revoked."
    )
    rotated_from = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    revoked_by = _username()
    created_by = _username()

    class Meta:
        model = APIKey
        fields = [
            "id",
            "application",
            "name",
            "prefix",
            "status",
            "expires_at",
            "revoked_at",
            "revoked_by",
            "grace_ends_at",
            "rotated_from",
            "last_used_at",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_status(self, key: APIKey) -> str:
        from django.utils import timezone

        now = timezone.now()
        if key.revoked_at is not None:
            return "revoked"
        if key.expires_at <= now or (key.grace_ends_at and key.grace_ends_at <= now):
            return "expired"
        return "rotating" if key.grace_ends_at else "active"


class NewAPIKeySerializer(APIKeySerializer):
    """A key just made: ``key`` is its secret, shown this once."""

    key = serializers.CharField(
        read_only=True, help_text="The secret: shown once, never again. Store it now."
    )

    class Meta(APIKeySerializer.Meta):
        fields = ["key", *APIKeySerializer.Meta.fields]
        read_only_fields = fields


class APIKeyCreateSerializer(serializers.Serializer):
    application = ScopedPrimaryKeyRelatedField(
        model=Application, selector=selectors.application_list_for, help_text="Application id."
    )
    name = serializers.CharField(max_length=100)
    expires_at = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="Default: 90 days from now; at most 365 days from now.",
    )


class APIKeyRotateSerializer(serializers.Serializer):
    grace_hours = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=720,
        help_text="How long the old key keeps working (default 24 hours).",
    )

"""The developer portal: published APIs, plans, applications, subscriptions, API keys, usage.

A ``PublishedAPI`` exposes a product to developers under a slug (the ``model`` of a gateway
call). It follows a pinned release, or — with no pin — the product's current released release.
A developer's ``Application`` subscribes to one of the API's ``Plan``\\ s; an ``APIKey`` belongs to
one application and works for that application's active subscriptions only.

``UsageRecord`` is one gateway call that reached a subscription (every outcome, rate-limited and
refused calls included), written off the response path in batches; ``UsageRollup`` sums them per
subscription per hour and per day for the charts. ``LimitCounter`` is the database-backed rate
limiter of the embedded set-up (Redis holds the counters when it is configured).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.catalog.models import Product
from apps.core.history import history
from apps.core.models import BaseModel
from apps.releases.models import Release


class APIStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"


class PublishedAPI(BaseModel):
    slug = models.SlugField(
        max_length=64, unique=True, help_text="The name developers call: the gateway's `model`."
    )
    name = models.CharField(max_length=150)
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="published_apis")
    # Pinned release; null: the product's current released release.
    release = models.ForeignKey(
        Release, null=True, blank=True, on_delete=models.PROTECT, related_name="published_apis"
    )
    status = models.CharField(max_length=16, choices=APIStatus.choices, default=APIStatus.DRAFT)
    summary = models.CharField(max_length=300, blank=True)
    docs = models.TextField(blank=True, help_text="Markdown, rendered and sanitised.")
    published_at = models.DateTimeField(null=True, blank=True)
    deprecated_at = models.DateTimeField(null=True, blank=True)
    sunset_at = models.DateTimeField(
        null=True, blank=True, help_text="When a deprecated API stops answering (then 410)."
    )
    migration_note = models.TextField(blank=True, help_text="What deprecated subscribers do next.")
    successor = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    retired_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = history()

    class Meta:
        ordering = ["slug"]
        verbose_name = "published API"
        indexes = [models.Index(fields=["product", "status"])]

    def __str__(self) -> str:
        return self.slug


class Plan(BaseModel):
    api = models.ForeignKey(PublishedAPI, on_delete=models.PROTECT, related_name="plans")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=100)
    requests_per_minute = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)]
    )
    # Null: no monthly token quota.
    tokens_per_month = models.PositiveBigIntegerField(null=True, blank=True)
    approval_required = models.BooleanField(default=True)
    terms = models.TextField(blank=True)
    # An inactive plan takes no new subscriptions; existing ones keep working.
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = history()

    class Meta:
        ordering = ["api", "requests_per_minute", "slug"]
        constraints = [models.UniqueConstraint(fields=["api", "slug"], name="plan_slug_per_api")]

    def __str__(self) -> str:
        return f"{self.api.slug}/{self.slug}" if self.api_id else self.slug


class Application(BaseModel):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="applications"
    )
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)

    history = history()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="application_name_per_owner")
        ]

    def __str__(self) -> str:
        return self.name


class SubscriptionState(models.TextChoices):
    PENDING = "pending", "Pending"
    ACTIVE = "active", "Active"
    REJECTED = "rejected", "Rejected"
    SUSPENDED = "suspended", "Suspended"
    CANCELLED = "cancelled", "Cancelled"


# A subscription in one of these states blocks a second one of the same application to the API.
LIVE_SUBSCRIPTION_STATES = (
    SubscriptionState.PENDING,
    SubscriptionState.ACTIVE,
    SubscriptionState.SUSPENDED,
)


class Subscription(BaseModel):
    application = models.ForeignKey(
        Application, on_delete=models.PROTECT, related_name="subscriptions"
    )
    api = models.ForeignKey(PublishedAPI, on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    state = models.CharField(
        max_length=16, choices=SubscriptionState.choices, default=SubscriptionState.PENDING
    )
    justification = models.TextField(blank=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)

    history = history()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["api", "state"]), models.Index(fields=["state"])]
        constraints = [
            models.UniqueConstraint(
                fields=["application", "api"],
                condition=Q(state__in=["pending", "active", "suspended"]),
                name="one_live_subscription_per_application_and_api",
            )
        ]

    def __str__(self) -> str:
        return f"{self.application} → {self.plan}" if self.plan_id else str(self.pk)


class APIKey(BaseModel):
    HOUSEKEEPING_FIELDS = frozenset({"last_used_at"})

    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Set on the old key when it is rotated: it keeps working until then.
    grace_ends_at = models.DateTimeField(null=True, blank=True)
    rotated_from = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_to"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = history(excluded_fields=["key_hash", "last_used_at"])

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def ends_at(self):
        """When the key stops working: the earliest of expiry, revocation and rotation grace."""
        return min(t for t in (self.expires_at, self.revoked_at, self.grace_ends_at) if t)

    def is_usable(self, now) -> bool:
        return now < self.ends_at()


class UsageEndpoint(models.TextChoices):
    CHAT = "chat", "Chat completions"
    INVOKE = "invoke", "Invoke"


class UsageOutcome(models.TextChoices):
    OK = "ok", "OK"
    ERROR = "error", "Error"  # the upstream failed (5xx)
    REJECTED = "rejected", "Rejected"  # bad request (4xx other than 429)
    RATE_LIMITED = "rate_limited", "Rate limited"


class UsageRecord(models.Model):
    """One gateway call that reached a subscription. Telemetry: not governed, no history."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(db_index=True)
    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="+")
    api = models.ForeignKey(PublishedAPI, on_delete=models.PROTECT, related_name="+")
    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="+")
    key = models.ForeignKey(APIKey, on_delete=models.PROTECT, related_name="+")
    release = models.ForeignKey(
        Release, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    # The pipeline's ProviderCall for this request, when one was made (not for refused calls).
    provider_call_id = models.UUIDField(null=True, blank=True)
    endpoint = models.CharField(max_length=16, choices=UsageEndpoint.choices)
    streamed = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField()
    outcome = models.CharField(max_length=16, choices=UsageOutcome.choices)
    error_code = models.CharField(max_length=64, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=8, default=0)
    latency_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["subscription", "created_at"]),
            models.Index(fields=["api", "created_at"]),
            models.Index(fields=["application", "created_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.endpoint} {self.status_code} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class RollupPeriod(models.TextChoices):
    HOUR = "hour", "Hour"
    DAY = "day", "Day"


class UsageRollup(models.Model):
    """The usage of one subscription over one hour or one day (UTC), recomputed from the
    records by the beat task; idempotent."""

    subscription = models.ForeignKey(Subscription, on_delete=models.PROTECT, related_name="+")
    api = models.ForeignKey(PublishedAPI, on_delete=models.PROTECT, related_name="+")
    application = models.ForeignKey(Application, on_delete=models.PROTECT, related_name="+")
    period = models.CharField(max_length=8, choices=RollupPeriod.choices)
    start = models.DateTimeField()
    requests = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)  # outcome error or rejected
    rate_limited = models.PositiveIntegerField(default=0)
    tokens_in = models.PositiveBigIntegerField(default=0)
    tokens_out = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=16, decimal_places=8, default=0)
    latency_ms_sum = models.PositiveBigIntegerField(default=0)
    latency_ms_max = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["period", "start"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period", "start"], name="one_rollup_per_bucket"
            )
        ]
        indexes = [
            models.Index(fields=["api", "period", "start"]),
            models.Index(fields=["application", "period", "start"]),
        ]

    def __str__(self) -> str:
        return f"{self.period} from {self.start:%Y-%m-%d %H:%M}"


class LimitCounter(models.Model):
    """A counter of the database-backed rate limiter (embedded set-up): ``key`` names the
    subscription and the limit, ``window`` the minute or month it counts."""

    key = models.CharField(max_length=120, primary_key=True)
    window = models.BigIntegerField()
    value = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.key}@{self.window}={self.value}"


class UsageRollupState(models.Model):
    """Where the rollups stand (one row): the records created before ``covered_until`` are in
    the rollups; the charts read the raw records for the buckets after it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    covered_until = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"rollups cover records before {self.covered_until}"

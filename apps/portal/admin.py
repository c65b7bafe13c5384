"""Operations view of the developer portal: read-mostly. Writes go through the services (so
they are audited); usage is telemetry and read-only; a key's hash is never shown."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import (
    APIKey,
    Application,
    Plan,
    PublishedAPI,
    Subscription,
    UsageRecord,
    UsageRollup,
    UsageRollupState,
)


class ReadOnlyAdmin(SimpleHistoryAdmin):
    actions = None  # no bulk delete: governed models refuse it

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class PlanInline(admin.TabularInline):
    model = Plan
    extra = 0
    can_delete = False
    fields = ("slug", "name", "requests_per_minute", "tokens_per_month", "approval_required")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PublishedAPI)
class PublishedAPIAdmin(ReadOnlyAdmin):
    list_display = ("slug", "name", "product", "status", "release", "published_at", "sunset_at")
    list_filter = ("status",)
    list_select_related = ("product", "release", "release__product")
    search_fields = ("slug", "name", "product__slug")
    inlines = [PlanInline]


@admin.register(Plan)
class PlanAdmin(ReadOnlyAdmin):
    list_display = (
        "api",
        "slug",
        "requests_per_minute",
        "tokens_per_month",
        "approval_required",
        "active",
    )
    list_filter = ("approval_required", "active")
    list_select_related = ("api",)
    search_fields = ("slug", "name", "api__slug")


@admin.register(Application)
class ApplicationAdmin(ReadOnlyAdmin):
    list_display = ("name", "owner", "created_at")
    list_select_related = ("owner",)
    search_fields = ("name", "owner__username")


@admin.register(Subscription)
class SubscriptionAdmin(ReadOnlyAdmin):
    list_display = ("application", "api", "plan", "state", "requested_by", "decided_by")
    list_filter = ("state",)
    list_select_related = ("application", "api", "plan", "plan__api", "requested_by", "decided_by")
    search_fields = ("application__name", "api__slug", "plan__slug")


@admin.register(APIKey)
class APIKeyAdmin(ReadOnlyAdmin):
    list_display = (
        "name",
        "prefix",
        "application",
        "expires_at",
        "revoked_at",
        "grace_ends_at",
        "last_used_at",
    )
    list_select_related = ("application",)
    search_fields = ("name", "prefix", "application__name")
    exclude = ("key_hash",)


class TelemetryAdmin(admin.ModelAdmin):
    actions = None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(UsageRecord)
class UsageRecordAdmin(TelemetryAdmin):
    list_display = (
        "created_at",
        "api",
        "application",
        "endpoint",
        "status_code",
        "outcome",
        "tokens_in",
        "tokens_out",
        "cost",
        "latency_ms",
    )
    list_filter = ("outcome", "endpoint", "streamed")
    list_select_related = ("api", "application")
    date_hierarchy = "created_at"


@admin.register(UsageRollup)
class UsageRollupAdmin(TelemetryAdmin):
    list_display = ("period", "start", "api", "application", "requests", "errors", "cost")
    list_filter = ("period",)
    list_select_related = ("api", "application")
    date_hierarchy = "start"


@admin.register(UsageRollupState)
class UsageRollupStateAdmin(TelemetryAdmin):
    list_display = ("covered_until", "updated_at")

"""Operations view of the gateway. The secret is never shown: only whether one is set."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import Provider, ProviderCall, ProviderPrice


class ProviderPriceInline(admin.TabularInline):
    model = ProviderPrice
    extra = 0
    can_delete = False
    fields = ("provider_model", "input_per_million", "output_per_million", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Provider)
class ProviderAdmin(SimpleHistoryAdmin):
    actions = None  # no bulk delete: governed models refuse it
    list_display = ("slug", "name", "kind", "base_url", "enabled", "secret_is_set", "updated_at")
    list_filter = ("kind", "enabled")
    search_fields = ("slug", "name")
    exclude = ("secret_encrypted",)
    readonly_fields = ("secret_is_set", "created_by")
    inlines = [ProviderPriceInline]

    def has_add_permission(self, request):
        return False  # created through the services (audited), from the API

    def has_change_permission(self, request, obj=None):
        return False  # changed through the services, so secrets are encrypted and audited

    @admin.display(boolean=True, description="secret set")
    def secret_is_set(self, obj):
        return obj.secret_set


@admin.register(ProviderPrice)
class ProviderPriceAdmin(SimpleHistoryAdmin):
    actions = None
    list_display = ("provider", "provider_model", "input_per_million", "output_per_million")
    list_select_related = ("provider",)
    search_fields = ("provider__slug", "provider_model")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ProviderCall)
class ProviderCallAdmin(admin.ModelAdmin):
    """Read-only: calls are telemetry written by the pipeline."""

    actions = None
    list_display = (
        "created_at",
        "provider",
        "provider_model",
        "outcome",
        "attempts",
        "tokens_in",
        "tokens_out",
        "cost",
        "latency_ms",
        "cache_hit",
    )
    list_filter = ("outcome", "cache_hit", "provider")
    list_select_related = ("provider",)
    search_fields = ("provider_model", "error_class")
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

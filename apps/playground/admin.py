"""Operations view of playground and batch runs: read-only (runs are started from the pages or
the API, which audit them; results are written by the worker)."""

from django.contrib import admin

from .models import BatchItem, BatchRun, PlaygroundRun


class ReadOnlyAdmin(admin.ModelAdmin):
    actions = None

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(PlaygroundRun)
class PlaygroundRunAdmin(ReadOnlyAdmin):
    list_display = ("id", "state", "team", "release", "created_by", "created_at", "latency_ms")
    list_filter = ("state",)
    list_select_related = ("team", "release", "created_by")
    search_fields = ("id", "created_by__username")


@admin.register(BatchRun)
class BatchRunAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "state",
        "team",
        "dataset_version",
        "total",
        "succeeded_count",
        "failed_count",
        "created_by",
        "created_at",
    )
    list_filter = ("state",)
    list_select_related = ("team", "dataset_version", "created_by")
    search_fields = ("id", "created_by__username")


@admin.register(BatchItem)
class BatchItemAdmin(ReadOnlyAdmin):
    list_display = ("batch", "index", "state", "tokens_in", "tokens_out", "cost", "latency_ms")
    list_filter = ("state",)
    raw_id_fields = ("batch", "call")

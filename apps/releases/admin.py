from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import Release, ReleaseDataset


class ReleaseDatasetInline(admin.TabularInline):
    model = ReleaseDataset
    extra = 0
    readonly_fields = ("dataset_version",)
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Release)
class ReleaseAdmin(SimpleHistoryAdmin):
    """Read-only: releases change through the services (drafts) and change requests."""

    actions = None
    list_display = ("__str__", "status", "fingerprint", "effective_from", "effective_to")
    list_filter = ("status",)
    search_fields = ("product__slug", "version", "fingerprint")
    inlines = [ReleaseDatasetInline]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

from django.contrib import admin

from .models import AuditCheckpoint, AuditEvent


class ReadOnlyAdmin(admin.ModelAdmin):
    """The trail and its checkpoints are append-only: admins read them, nobody edits them."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "at", "actor_username", "verb", "object_type", "object_repr")
    list_filter = ("verb", "object_type")
    search_fields = ("actor_username", "object_id", "object_repr")


@admin.register(AuditCheckpoint)
class AuditCheckpointAdmin(ReadOnlyAdmin):
    list_display = ("seq", "at", "key_id", "events", "head_hash")
    search_fields = ("head_hash", "key_id")

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import Approval, ApprovalPolicy, ChangeRequest


class ReadOnlyAdmin(SimpleHistoryAdmin):
    """Change control is changed through its services (audited), never edited here."""

    actions = None

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ApprovalInline(admin.TabularInline):
    model = Approval
    extra = 0
    fields = ("reviewer_username", "decision", "role", "required", "comment", "fingerprint")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ChangeRequest)
class ChangeRequestAdmin(ReadOnlyAdmin):
    list_display = ("title", "product", "state", "kind", "risk", "requested_by", "created_at")
    list_filter = ("state", "kind", "risk")
    search_fields = ("title", "product__slug")
    inlines = [ApprovalInline]


@admin.register(ApprovalPolicy)
class ApprovalPolicyAdmin(ReadOnlyAdmin):
    list_display = ("product", "stage", "required_roles", "veto")
    list_filter = ("stage",)

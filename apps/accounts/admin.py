from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from simple_history.admin import SimpleHistoryAdmin

from .models import Membership, PersonalAccessToken, Team, User


@admin.register(User)
class UserAdmin(BaseUserAdmin, SimpleHistoryAdmin):
    list_display = ("username", "display_name", "email", "is_staff", "is_active")
    fieldsets = (*BaseUserAdmin.fieldsets, ("Portal", {"fields": ("display_name",)}))


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    fields = ("user", "role")
    readonly_fields = ("user", "role")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # memberships change through accounts.services (audited)


@admin.register(Team)
class TeamAdmin(SimpleHistoryAdmin):
    list_display = ("slug", "name", "created_at")
    search_fields = ("slug", "name")
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(SimpleHistoryAdmin):
    list_display = ("user", "team", "role", "created_at")
    list_filter = ("role", "team")
    search_fields = ("user__username", "team__slug")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(PersonalAccessToken)
class PersonalAccessTokenAdmin(SimpleHistoryAdmin):
    list_display = ("name", "user", "prefix", "status", "expires_at", "last_used_at")
    search_fields = ("name", "prefix", "user__username")
    readonly_fields = ("prefix", "token_hash", "last_used_at", "revoked_at")

    def has_add_permission(self, request):
        return False

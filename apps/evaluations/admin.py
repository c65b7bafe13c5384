"""Operations view of evaluations: read-only. Suites and versions change through the services
(audited) from the pages or the API; runs and results are written by the worker."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from .models import EvalCase, EvalResult, EvalRun, EvalSuite, EvalSuiteVersion


class ReadOnlyMixin:
    actions = None

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class EvalCaseInline(ReadOnlyMixin, admin.TabularInline):
    model = EvalCase
    fields = ("position", "key", "group", "vary", "variables", "expected", "assertions")
    readonly_fields = fields
    extra = 0
    show_change_link = False


@admin.register(EvalSuite)
class EvalSuiteAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    list_display = ("slug", "name", "owner_team", "created_by", "created_at")
    list_filter = ("owner_team",)
    list_select_related = ("owner_team", "created_by")
    search_fields = ("slug", "name")


@admin.register(EvalSuiteVersion)
class EvalSuiteVersionAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    list_display = ("__str__", "content_hash", "created_by", "created_at", "deprecated_at")
    list_select_related = ("suite", "created_by")
    search_fields = ("content_hash", "suite__slug")
    inlines = [EvalCaseInline]


@admin.register(EvalRun)
class EvalRunAdmin(ReadOnlyMixin, SimpleHistoryAdmin):
    list_display = ("id", "state", "suite_version", "release", "pass_rate", "created_at")
    list_filter = ("state",)
    list_select_related = ("suite_version", "suite_version__suite", "release")
    search_fields = ("id",)


@admin.register(EvalResult)
class EvalResultAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("run", "case", "outcome", "latency_ms", "cost", "created_at")
    list_filter = ("outcome",)
    raw_id_fields = ("run", "case", "call")

"""Operations view of the catalog. Versions are read-only here: they change only by new versions."""

from django.contrib import admin
from guardian.admin import GuardedModelAdmin
from simple_history.admin import SimpleHistoryAdmin

from .models import (
    Dataset,
    DatasetVersion,
    Model,
    ModelVersion,
    Product,
    PromptTemplate,
    PromptTemplateVersion,
)


class GovernedAdmin(GuardedModelAdmin, SimpleHistoryAdmin):
    actions = None  # no bulk delete: governed models refuse it

    def has_add_permission(self, request):
        return False  # created through the services (audited), from the pages or the API


@admin.register(Product)
class ProductAdmin(GovernedAdmin):
    list_display = ("slug", "name", "owner_team", "stage", "risk_class", "updated_at")
    list_filter = ("stage", "risk_class", "owner_team")
    search_fields = ("slug", "name")
    readonly_fields = ("stage", "owner_team", "created_by")


@admin.register(Model, Dataset, PromptTemplate)
class ArtifactAdmin(GovernedAdmin):
    list_display = ("slug", "name", "owner_team", "created_at")
    list_filter = ("owner_team",)
    search_fields = ("slug", "name")
    readonly_fields = ("owner_team", "created_by")


class VersionAdmin(SimpleHistoryAdmin):
    actions = None
    list_display = ("__str__", "content_hash", "created_by", "created_at", "deprecated_at")
    search_fields = ("content_hash",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


admin.site.register(PromptTemplateVersion, VersionAdmin)
admin.site.register(ModelVersion, VersionAdmin)
admin.site.register(DatasetVersion, VersionAdmin)

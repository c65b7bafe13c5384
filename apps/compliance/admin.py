"""Operations view of incidents (read-only: they change through the services, audited), and the
product admin's delete permission: a product that has or had a release is never deleted."""

from django.contrib import admin
from simple_history.admin import SimpleHistoryAdmin

from apps.catalog.admin import ProductAdmin
from apps.catalog.models import Product
from apps.releases.models import Release

from .models import Incident


@admin.register(Incident)
class IncidentAdmin(SimpleHistoryAdmin):
    actions = None
    list_display = ("title", "product", "release", "severity", "status", "occurred_at")
    list_filter = ("severity", "status")
    search_fields = ("title", "product__slug")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class RetainedProductAdmin(ProductAdmin):
    def has_delete_permission(self, request, obj=None):
        if obj is not None and (
            Release.objects.filter(product_id=obj.pk).exists()
            or Release.history.filter(product_id=obj.pk).exists()
        ):
            return False
        return super().has_delete_permission(request, obj)


if admin.site.is_registered(Product):
    admin.site.unregister(Product)
admin.site.register(Product, RetainedProductAdmin)

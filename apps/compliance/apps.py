from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "apps.compliance"
    label = "compliance"
    verbose_name = "Compliance: incidents, time travel, dossiers, retention"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.apps import apps
        from django.core import checks
        from django.db.models.signals import pre_delete
        from simple_history.models import HistoricalChanges

        from apps.catalog.models import Product

        from . import panels  # noqa: F401  (registers the product page sections)
        from .retention import check_retention_setting, history_delete_guard, product_delete_guard

        checks.register(check_retention_setting, "compliance")
        pre_delete.connect(
            product_delete_guard, sender=Product, dispatch_uid="compliance.product_delete_guard"
        )
        for historical in apps.get_models():
            if not issubclass(historical, HistoricalChanges):
                continue
            pre_delete.connect(
                history_delete_guard,
                sender=historical,
                dispatch_uid=f"compliance.history_delete_guard.{historical._meta.label_lower}",
            )

from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "apps.compliance"
    label = "compliance"
    verbose_name = "Compliance: incidents, time travel, dossiers, retention"
    default_auto_field = "django.db.models.BigAutoField"

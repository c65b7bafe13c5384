from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "apps.portal"
    label = "portal"
    verbose_name = "Developer portal"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import invalidation, panels, receivers  # noqa: F401  (receivers, panels)

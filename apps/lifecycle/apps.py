from django.apps import AppConfig


class LifecycleConfig(AppConfig):
    name = "apps.lifecycle"
    label = "lifecycle"
    verbose_name = "Lifecycle: briefs, assessments, stage gates, retirement, portfolio"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import panels, tasks  # noqa: F401  (product page sections, the sunset beat task)

from django.apps import AppConfig


class PlaygroundConfig(AppConfig):
    name = "apps.playground"
    label = "playground"
    verbose_name = "Playground and batch runs"
    default_auto_field = "django.db.models.BigAutoField"

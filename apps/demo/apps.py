from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo organisation: the top floor, it may use every app's services."""

    name = "apps.demo"
    label = "demo"

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plmportal.settings")

app = Celery("plmportal")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

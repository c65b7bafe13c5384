from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter(trailing_slash=True)
router.register("audit-events", views.AuditEventViewSet, basename="audit-event")

app_name = "audit-trail-api"
urlpatterns = [
    path("history/", views.ObjectHistoryView.as_view(), name="history"),
    *router.urls,
]

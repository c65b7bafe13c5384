"""Pages of the audit trail: the trail, its exports, the history of one object."""

from django.urls import path

from . import views_trail

urlpatterns = [
    path("audit/", views_trail.trail, name="audit_trail"),
    path("audit/export/", views_trail.trail_export, name="audit_trail_export"),
    path(
        "audit/history/<str:object_type>/<str:object_id>/",
        views_trail.object_history_page,
        name="audit_history",
    ),
]

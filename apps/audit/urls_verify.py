from django.urls import path

from . import views_verify

urlpatterns = [
    path("audit/verify/", views_verify.audit_verify, name="audit_verify"),
    path("audit/verify/start/", views_verify.audit_verify_start, name="audit_verify_start"),
    path("audit/verify/runs/<int:pk>/", views_verify.audit_verify_run, name="audit_verify_run"),
    path("audit/public-key.pem", views_verify.audit_public_key, name="audit_public_key"),
]

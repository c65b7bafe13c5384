from django.urls import include, path

urlpatterns = [
    path("", include("apps.audit.api.urls_trail")),
    path("", include("apps.audit.api.urls_verify")),
]

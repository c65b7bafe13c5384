from django.urls import include, path

urlpatterns = [
    path("", include("apps.audit.urls_trail")),
    path("", include("apps.audit.urls_verify")),
]

from django.urls import include, path

urlpatterns = [
    path("", include("apps.compliance.api.urls_live")),
    path("", include("apps.compliance.api.urls_incidents")),
    path("", include("apps.compliance.api.urls_dossier")),
]

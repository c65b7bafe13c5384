from django.urls import include, path

urlpatterns = [
    path("", include("apps.compliance.urls_live")),
    path("", include("apps.compliance.urls_incidents")),
    path("", include("apps.compliance.urls_dossier")),
]

from django.urls import path

from .views_dossier import ReleaseDossierView

# Beside the releases router's ``releases/{pk}/`` routes (it registers no ``dossier`` action).
urlpatterns = [
    path(
        "releases/<uuid:pk>/dossier/",
        ReleaseDossierView.as_view(),
        name="api-release-dossier",
    ),
]

from django.urls import path

from . import views_dossier

urlpatterns = [
    path("releases/<uuid:pk>/dossier/", views_dossier.release_dossier, name="release_dossier"),
    path(
        "releases/<uuid:pk>/dossier.zip",
        views_dossier.release_dossier_zip,
        name="release_dossier_zip",
    ),
]

from django.urls import path

from . import views

urlpatterns = [
    path("products/<uuid:pk>/releases/", views.release_list, name="release_list"),
    path("products/<uuid:pk>/releases/new/", views.release_create, name="release_create"),
    path("releases/<uuid:pk>/", views.release_detail, name="release_detail"),
    path("releases/<uuid:pk>/edit/", views.release_edit, name="release_edit"),
]

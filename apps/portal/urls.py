from django.urls import path

from . import views

urlpatterns = [
    path("portal/", views.catalog, name="portal_catalog"),
]

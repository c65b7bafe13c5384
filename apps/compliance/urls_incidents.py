from django.urls import path

from . import views_incidents

urlpatterns = [
    path(
        "products/<slug:key>/incidents/",
        views_incidents.product_incidents,
        name="product_incidents",
    ),
    path("incidents/<uuid:pk>/", views_incidents.incident_detail, name="incident_detail"),
    path("incidents/<uuid:pk>/status/", views_incidents.incident_status, name="incident_status"),
]

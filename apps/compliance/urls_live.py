from django.urls import path

from . import views_live

urlpatterns = [
    # Neither catalog's products/<uuid:pk>/ nor portal's portal/apis/<slug>/ patterns end in
    # live/, so these are reached although those apps are included first.
    path("products/<slug:key>/live/", views_live.product_live, name="product_live"),
    path("portal/apis/<slug:slug>/live/", views_live.api_live, name="api_live"),
]

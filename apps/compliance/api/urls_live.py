from django.urls import path

from . import views_live

urlpatterns = [
    path(
        "products/<uuid:pk>/live-state/",
        views_live.ProductLiveStateView.as_view(),
        name="product-live-state",
    ),
    path("apis/<uuid:pk>/live/", views_live.APILiveView.as_view(), name="api-live"),
]

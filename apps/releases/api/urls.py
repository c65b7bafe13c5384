from django.urls import path
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False  # the catalog's router serves the API root
router.register("releases", views.ReleaseViewSet, basename="release")

app_name = "releases-api"
urlpatterns = [
    # Beside the catalog's products/ routes, so that the catalog does not import releases.
    path("products/<uuid:pk>/live/", views.ProductLiveView.as_view(), name="product-live"),
    *router.urls,
]

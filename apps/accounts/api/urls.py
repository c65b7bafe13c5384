from django.urls import path
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False  # the catalog's router serves the API root
router.register("tokens", views.TokenViewSet, basename="token")
router.register("teams", views.TeamViewSet, basename="team")

app_name = "accounts-api"
urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    *router.urls,
]

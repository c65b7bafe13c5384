from rest_framework.routers import DefaultRouter

from . import views_incidents

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False  # the catalog's router serves the API root
router.register("incidents", views_incidents.IncidentViewSet, basename="incident")

urlpatterns = router.urls

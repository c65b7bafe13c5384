from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False  # the catalog's router serves the API root
router.register("playground-runs", views.PlaygroundRunViewSet, basename="playground-run")
router.register("batch-runs", views.BatchRunViewSet, basename="batch-run")

app_name = "playground-api"
urlpatterns = router.urls

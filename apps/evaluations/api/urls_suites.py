"""Routes of the evaluation-suite API: ``eval-suites/`` and ``eval-suite-versions/``."""

from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False  # the catalog's router serves the API root
router.register("eval-suites", views.EvalSuiteViewSet, basename="eval-suite")
router.register("eval-suite-versions", views.EvalSuiteVersionViewSet, basename="eval-suite-version")

urlpatterns = router.urls

"""Routes of the evaluation-run API: ``eval-runs/`` (with ``cancel/`` and ``results/``)."""

from rest_framework.routers import DefaultRouter

from .runs import EvalRunViewSet

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False  # the catalog's router serves the API root
router.register("eval-runs", EvalRunViewSet, basename="eval-run")

urlpatterns = router.urls

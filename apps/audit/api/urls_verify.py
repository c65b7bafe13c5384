from django.urls import path
from rest_framework.routers import DefaultRouter

from . import verify

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False  # the catalog's router serves the API root
router.register("audit/verifications", verify.VerificationRunViewSet, basename="audit-verification")
router.register("audit/checkpoints", verify.CheckpointViewSet, basename="audit-checkpoint")

urlpatterns = [
    path("audit/public-key/", verify.PublicKeyView.as_view(), name="audit-public-key"),
    *router.urls,
]

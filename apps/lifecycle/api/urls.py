from django.urls import path
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False  # the catalog's router serves the API root
router.register("product-briefs", views.ProductBriefViewSet, basename="product-brief")
router.register("assessments", views.AssessmentViewSet, basename="assessment")
router.register("lifecycle-requests", views.LifecycleRequestViewSet, basename="lifecycle-request")
router.register("gate-definitions", views.GateDefinitionViewSet, basename="gate-definition")

app_name = "lifecycle-api"
urlpatterns = [
    path(
        "lifecycle-checklist/",
        views.LifecycleChecklistView.as_view(),
        name="lifecycle-checklist",
    ),
    path("target-metrics/", views.TargetMetricsView.as_view(), name="target-metrics"),
    *router.urls,
]

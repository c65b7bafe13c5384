from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False  # the catalog's router serves the API root
router.register("apis", views.PublishedAPIViewSet, basename="published-api")
router.register("plans", views.PlanViewSet, basename="plan")
router.register("applications", views.ApplicationViewSet, basename="application")
router.register("subscriptions", views.SubscriptionViewSet, basename="subscription")
router.register("api-keys", views.APIKeyViewSet, basename="api-key")

app_name = "portal-api"
urlpatterns = router.urls

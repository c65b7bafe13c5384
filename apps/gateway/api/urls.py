from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.register("providers", views.ProviderViewSet, basename="provider")
router.register("provider-calls", views.ProviderCallViewSet, basename="provider-call")

app_name = "gateway-api"
urlpatterns = router.urls

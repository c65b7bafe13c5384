from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.register("providers", views.ProviderViewSet, basename="provider")

app_name = "gateway-api"
urlpatterns = router.urls

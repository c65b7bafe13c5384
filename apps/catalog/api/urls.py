from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.register("products", views.ProductViewSet, basename="product")
router.register("models", views.ModelViewSet, basename="model")
router.register("model-versions", views.ModelVersionViewSet, basename="model-version")
router.register("datasets", views.DatasetViewSet, basename="dataset")
router.register("dataset-versions", views.DatasetVersionViewSet, basename="dataset-version")
router.register("prompts", views.PromptViewSet, basename="prompt")
router.register("prompt-versions", views.PromptVersionViewSet, basename="prompt-version")

app_name = "catalog-api"
urlpatterns = router.urls

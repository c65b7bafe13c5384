from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False  # the catalog's router serves the API root
router.register("change-requests", views.ChangeRequestViewSet, basename="change-request")
router.register("approval-policies", views.ApprovalPolicyViewSet, basename="approval-policy")

app_name = "changes-api"
urlpatterns = router.urls

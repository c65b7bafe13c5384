from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apps.core import views as core_views

api_v1 = [
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.catalog.api.urls")),
    path("", include("apps.releases.api.urls")),
    path("", include("apps.changes.api.urls")),
    path("", include("apps.gateway.api.urls")),
    path("", include("apps.playground.api.urls")),
    path("", include("apps.evaluations.api.urls")),
    path("", include("apps.portal.api.urls")),
    path("", include("apps.audit.api.urls")),
    path("", include("apps.compliance.api.urls")),
    path("", include("apps.lifecycle.api.urls")),
]

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("", include("django_prometheus.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("", include("apps.accounts.urls")),
    path("", include("apps.catalog.urls")),
    path("", include("apps.releases.urls")),
    path("", include("apps.changes.urls")),
    path("", include("apps.gateway.urls")),
    path("", include("apps.playground.urls")),
    path("", include("apps.evaluations.urls")),
    path("", include("apps.portal.urls")),
    path("", include("apps.audit.urls")),
    path("", include("apps.compliance.urls")),
    path("", include("apps.lifecycle.urls")),
]
handler500 = "apps.core.views.server_error"

from django.urls import include, path

urlpatterns = [
    path("", include("apps.lifecycle.urls_pages")),
    path("", include("apps.lifecycle.urls_portfolio")),
]

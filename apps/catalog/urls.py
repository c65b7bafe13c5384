from django.urls import path

from . import views


def _artifact_urls(kind: str, prefix: str) -> list:
    k = {"kind": kind}
    return [
        path(f"{prefix}/", views.artifact_list, k, name=f"{kind}_list"),
        path(f"{prefix}/new/", views.artifact_create, k, name=f"{kind}_create"),
        path(f"{prefix}/<uuid:pk>/", views.artifact_detail, k, name=f"{kind}_detail"),
        path(
            f"{prefix}/<uuid:pk>/versions/new/",
            views.version_create,
            k,
            name=f"{kind}_version_create",
        ),
        path(f"{prefix}/<uuid:pk>/diff/", views.artifact_diff, k, name=f"{kind}_diff"),
        path(
            f"{prefix}/versions/<uuid:pk>/",
            views.version_detail,
            k,
            name=f"{kind}_version_detail",
        ),
        path(
            f"{prefix}/versions/<uuid:pk>/deprecate/",
            views.version_deprecate,
            k,
            name=f"{kind}_version_deprecate",
        ),
    ]


urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("products/", views.product_list, name="product_list"),
    path("products/new/", views.product_create, name="product_create"),
    path("products/<uuid:pk>/", views.product_detail, name="product_detail"),
    *_artifact_urls("prompt", "prompts"),
    *_artifact_urls("model", "models"),
    *_artifact_urls("dataset", "datasets"),
    path(
        "prompts/versions/<uuid:pk>/render/",
        views.prompt_version_render,
        name="prompt_version_render",
    ),
]

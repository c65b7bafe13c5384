from django.urls import path

from . import views

urlpatterns = [
    path("products/<uuid:pk>/brief/", views.brief_page, name="lifecycle_brief"),
    path("products/<uuid:pk>/assessment/", views.assessment_page, name="lifecycle_assessment"),
    path(
        "products/<uuid:pk>/lifecycle/request/",
        views.request_create,
        name="lifecycle_request_create",
    ),
    path(
        "lifecycle/requests/<uuid:pk>/approve/",
        views.request_approve,
        name="lifecycle_request_approve",
    ),
    path(
        "lifecycle/requests/<uuid:pk>/reject/",
        views.request_reject,
        name="lifecycle_request_reject",
    ),
    path(
        "lifecycle/requests/<uuid:pk>/withdraw/",
        views.request_withdraw,
        name="lifecycle_request_withdraw",
    ),
]

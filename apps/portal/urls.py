from django.urls import path

from . import (
    panels,  # noqa: F401  (registers the product page and change request sections)
    views,
    views_applications,
    views_subscriptions,
)

urlpatterns = [
    path("portal/", views.catalog, name="portal_catalog"),
    path("portal/apis/new/", views.api_create, name="portal_api_create"),
    path("portal/apis/<slug:slug>/", views.api_detail, name="portal_api_detail"),
    path("portal/apis/<slug:slug>/edit/", views.api_edit, name="portal_api_edit"),
    path("portal/apis/<slug:slug>/publish/", views.api_publish, name="portal_api_publish"),
    path("portal/apis/<slug:slug>/deprecate/", views.api_deprecate, name="portal_api_deprecate"),
    path("portal/apis/<slug:slug>/retire/", views.api_retire, name="portal_api_retire"),
    path("portal/apis/<slug:slug>/plans/new/", views.plan_create, name="portal_plan_create"),
    path(
        "portal/apis/<slug:slug>/subscribe/",
        views_subscriptions.subscribe,
        name="portal_api_subscribe",
    ),
    path("portal/plans/<uuid:pk>/edit/", views.plan_edit, name="portal_plan_edit"),
    path(
        "portal/applications/",
        views_applications.application_list,
        name="portal_application_list",
    ),
    path(
        "portal/applications/<uuid:pk>/",
        views_applications.application_detail,
        name="portal_application_detail",
    ),
    path(
        "portal/applications/<uuid:pk>/keys/new/",
        views_applications.key_create,
        name="portal_key_create",
    ),
    path("portal/keys/<uuid:pk>/rotate/", views_applications.key_rotate, name="portal_key_rotate"),
    path("portal/keys/<uuid:pk>/revoke/", views_applications.key_revoke, name="portal_key_revoke"),
    path(
        "portal/subscriptions/",
        views_subscriptions.subscription_queue,
        name="portal_subscription_queue",
    ),
    path("portal/nav-count/", views_subscriptions.nav_count, name="portal_nav_count"),
    path(
        "portal/subscriptions/<uuid:pk>/approve/",
        views_subscriptions.subscription_approve,
        name="portal_subscription_approve",
    ),
    path(
        "portal/subscriptions/<uuid:pk>/reject/",
        views_subscriptions.subscription_reject,
        name="portal_subscription_reject",
    ),
    path(
        "portal/subscriptions/<uuid:pk>/suspend/",
        views_subscriptions.subscription_suspend,
        name="portal_subscription_suspend",
    ),
    path(
        "portal/subscriptions/<uuid:pk>/resume/",
        views_subscriptions.subscription_resume,
        name="portal_subscription_resume",
    ),
    path(
        "portal/subscriptions/<uuid:pk>/cancel/",
        views_subscriptions.subscription_cancel,
        name="portal_subscription_cancel",
    ),
]

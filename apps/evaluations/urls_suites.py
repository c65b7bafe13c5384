"""Pages of evaluation suites, their versions and cases (``suite_list`` is the nav's link)."""

from django.urls import path

from . import views

urlpatterns = [
    path("evaluations/", views.suite_list, name="suite_list"),
    path("evaluations/suites/new/", views.suite_create, name="suite_create"),
    path(
        "evaluations/suites/from-template/",
        views.suite_from_template,
        name="suite_from_template",
    ),
    path("evaluations/suites/<uuid:pk>/", views.suite_detail, name="suite_detail"),
    path("evaluations/suites/<uuid:pk>/edit/", views.suite_update, name="suite_update"),
    path(
        "evaluations/suites/<uuid:pk>/versions/new/",
        views.suite_version_create,
        name="suite_version_create",
    ),
    path(
        "evaluations/suites/<uuid:pk>/versions/new/row/",
        views.suite_case_row,
        name="suite_case_row",
    ),
    path("evaluations/suites/<uuid:pk>/import/", views.suite_import, name="suite_import"),
    path(
        "evaluations/suite-versions/<uuid:pk>/",
        views.suite_version_detail,
        name="suite_version_detail",
    ),
    path(
        "evaluations/suite-versions/<uuid:pk>/deprecate/",
        views.suite_version_deprecate,
        name="suite_version_deprecate",
    ),
]

"""Evaluation API: suites and versions, runs and their results, comparisons."""

from django.urls import include, path

urlpatterns = [
    path("", include("apps.evaluations.api.urls_suites")),
    path("", include("apps.evaluations.api.urls_runs")),
    path("", include("apps.evaluations.api.urls_compare")),
]

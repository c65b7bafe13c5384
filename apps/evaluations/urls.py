"""Evaluation pages: suites and cases, runs, comparisons (one module each)."""

from django.urls import include, path

urlpatterns = [
    path("", include("apps.evaluations.urls_suites")),
    path("", include("apps.evaluations.urls_runs")),
    path("", include("apps.evaluations.urls_compare")),
]

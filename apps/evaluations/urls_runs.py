"""Pages of evaluation runs."""

from django.urls import path

from . import views_runs

urlpatterns = [
    path("evaluations/runs/", views_runs.eval_run_list, name="eval_run_list"),
    path("evaluations/runs/new/", views_runs.eval_run_create, name="eval_run_create"),
    path("evaluations/runs/<uuid:pk>/", views_runs.eval_run_detail, name="eval_run_detail"),
    path("evaluations/runs/<uuid:pk>/cancel/", views_runs.eval_run_cancel, name="eval_run_cancel"),
]

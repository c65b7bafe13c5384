from django.urls import path

from . import views

urlpatterns = [
    path("playground/", views.playground, name="playground"),
    path("playground/variables/", views.playground_variables, name="playground_variables"),
    path("playground/runs/", views.playground_run_create, name="playground_run_create"),
    path("playground/runs/<uuid:pk>/", views.playground_run_detail, name="playground_run_detail"),
    path("batches/", views.batch_list, name="batch_list"),
    path("batches/new/", views.batch_create, name="batch_create"),
    path("batches/<uuid:pk>/", views.batch_detail, name="batch_detail"),
    path("batches/<uuid:pk>/cancel/", views.batch_cancel, name="batch_cancel"),
    path("batches/<uuid:pk>/results.jsonl", views.batch_results, name="batch_results"),
]

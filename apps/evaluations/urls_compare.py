from django.urls import path

from . import views_compare

urlpatterns = [path("evaluations/compare/", views_compare.eval_compare, name="eval_compare")]

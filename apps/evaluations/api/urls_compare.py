from django.urls import path

from .compare import EvalComparisonView

urlpatterns = [
    path("eval-comparisons/", EvalComparisonView.as_view(), name="eval-comparison"),
]

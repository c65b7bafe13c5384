from django.urls import path

from . import views

urlpatterns = [
    path("calls/", views.call_list, name="call_list"),
    path("calls/<uuid:pk>/", views.call_detail, name="call_detail"),
]

from django.urls import path

from . import views

urlpatterns = [
    path("changes/", views.change_list, name="change_list"),
    path("changes/queue/", views.change_queue, name="change_queue"),
    path("changes/new/", views.change_create, name="change_create"),
    path("changes/<uuid:pk>/", views.change_detail, name="change_detail"),
    path("changes/<uuid:pk>/edit/", views.change_edit, name="change_edit"),
    path("changes/<uuid:pk>/gates/", views.change_gates, name="change_gates"),
    path("changes/<uuid:pk>/submit/", views.change_submit, name="change_submit"),
    path("changes/<uuid:pk>/approve/", views.change_approve, name="change_approve"),
    path("changes/<uuid:pk>/reject/", views.change_reject, name="change_reject"),
    path("changes/<uuid:pk>/withdraw/", views.change_withdraw, name="change_withdraw"),
    path("changes/<uuid:pk>/implement/", views.change_implement, name="change_implement"),
    path("changes/<uuid:pk>/comment/", views.change_comment, name="change_comment"),
]

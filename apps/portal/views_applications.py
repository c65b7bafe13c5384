"""A developer's applications and their keys.

An application's page lists its subscriptions, its keys and its usage. A new key's secret is
shown once, in the response to the create (or rotate) POST — never stored, never on a later page
load — and that response is not cached (``no_store``). With htmx the keys section alone is
swapped in.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.exceptions import ApplicationError

from . import selectors, services
from .forms import ApplicationForm, KeyForm
from .models import Application
from .views_base import (
    add_service_error,
    key_status,
    next_url,
    no_store,
    page_of,
    refuse_or_404,
    render_page,
    usage,
)


def _application_or_404(request, pk) -> Application:
    return get_object_or_404(selectors.application_list_for(user=request.user), pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
def application_list(request):
    user = request.user
    form = ApplicationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            app = services.application_create(
                actor=user,
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
            )
        except ApplicationError as exc:
            add_service_error(form, exc)
        else:
            messages.success(
                request,
                f"Application “{app.name}” created: subscribe it to an API, then add a key.",
            )
            if request.POST.get("next"):
                return redirect(_back(request, app))
            return redirect("portal_application_detail", pk=app.pk)
    apps = selectors.application_list_for(user=user).filter(owner=user).order_by("name")
    return render_page(
        request,
        "portal/application_list.html",
        "portal/application_list.html",
        {"page": page_of(request, apps), "form": form},
    )


def _back(request, app) -> str:
    """Back to the API page the application was created from (``next``), with the new
    application chosen in its Subscribe form."""
    default = reverse("portal_application_detail", args=[app.pk])
    target = next_url(request, default)
    return target if target == default else f"{target}?application={app.pk}#subscribe"


def _keys_context(request, app, *, key_form=None, new_key=None, rotated=None) -> dict:
    now = timezone.now()
    keys = [
        {"key": k, "status": key_status(k, now)}
        for k in selectors.key_list_for(user=request.user)
        .filter(application=app)
        .order_by("-created_at")
    ]
    return {
        "application": app,
        "keys": keys,
        "key_form": key_form or KeyForm(),
        "new_key": new_key,
        "rotated": rotated,
        "is_owner": app.owner_id == request.user.pk,
    }


def _render_application(request, app, status: int = 200, **keys):
    subscriptions = (
        selectors.subscription_list_for(user=request.user)
        .filter(application=app)
        .order_by("-created_at")
    )
    context = {
        **_keys_context(request, app, **keys),
        "subscriptions": list(subscriptions),
        "usage": usage(application=app),
        "usage_scope": app.name,
    }
    response = render_page(
        request, "portal/application_detail.html", "portal/partials/keys.html", context, status
    )
    return no_store(response) if keys.get("new_key") else response


@login_required
@require_http_methods(["GET"])
def application_detail(request, pk):
    return _render_application(request, _application_or_404(request, pk))


@login_required
@require_POST
def key_create(request, pk):
    app = _application_or_404(request, pk)
    form = KeyForm(request.POST)
    if form.is_valid():
        try:
            new = services.key_create(
                actor=request.user,
                application=app,
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
            )
        except ApplicationError as exc:
            add_service_error(form, exc)
        else:
            return _render_application(request, app, new_key=new)
    return _render_application(request, app, key_form=form)


def _key_or_404(request, pk):
    return get_object_or_404(selectors.key_list_for(user=request.user), pk=pk)


@login_required
@require_POST
def key_rotate(request, pk):
    key = _key_or_404(request, pk)
    app = key.application
    try:
        new = services.key_rotate(actor=request.user, key=key)
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
        return redirect("portal_application_detail", pk=app.pk)
    old = selectors.key_list_for(user=request.user).get(pk=key.pk)
    return _render_application(request, app, new_key=new, rotated=old)


@login_required
@require_POST
def key_revoke(request, pk):
    key = _key_or_404(request, pk)
    try:
        services.key_revoke(actor=request.user, key=key)
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Key “{key.name}” ({key.prefix}…) is revoked: calls with it now get 401."
        )
    return redirect("portal_application_detail", pk=key.application_id)

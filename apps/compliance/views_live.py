"""Time-travel pages: what was live for a product, or a published API, at an instant.

``/products/<slug or id>/live/?at=…`` (``product_live``) and ``/portal/apis/<slug>/live/?at=…``
(``api_live``). A bad ``at`` is a message on the page (and a 400), never a 500; an instant
before the product (or API) existed says so.
"""

import uuid

from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.catalog.selectors import product_list_for
from apps.core.exceptions import ApplicationError
from apps.portal.selectors import api_list_for

from .forms import DATETIME_LOCAL, LiveAtForm
from .timetravel import ProductDidNotExist, api_live_at, live_at, parse_instant


def product_by_key(user, key: str):
    """A product the user may see, by slug or id (a 404 otherwise)."""
    qs = product_list_for(user=user)
    try:
        found = qs.filter(pk=uuid.UUID(key)).first()
    except ValueError:
        found = None
    found = found or qs.filter(slug=key).first()
    if found is None:
        raise Http404("No such product.")
    return found


def _instant(request):
    """(at, form, error): the instant asked for, or now with the error to show."""
    raw = request.GET.get("at", "")
    try:
        at = parse_instant(raw)
    except ApplicationError as exc:
        return None, LiveAtForm(initial={"at": raw[:40]}), exc.message
    form = LiveAtForm(initial={"at": timezone.localtime(at).strftime(DATETIME_LOCAL + ":%S")})
    return at, form, ""


@login_required
@require_GET
def product_live(request, key):
    product = product_by_key(request.user, key)
    at, form, error = _instant(request)
    state, missing = None, ""
    if at is not None:
        try:
            state = live_at(product=product, at=at)
        except ProductDidNotExist as exc:
            missing = exc.message
    response = render(
        request,
        "compliance/live_product.html",
        {
            "product": product,
            "at": at,
            "form": form,
            "error": error,
            "missing": missing,
            "state": state,
        },
    )
    if error:
        response.status_code = 400
    return response


@login_required
@require_GET
def api_live(request, slug):
    api = api_list_for(user=request.user).filter(slug=slug).first()
    if api is None or not product_list_for(user=request.user).filter(pk=api.product_id).exists():
        raise Http404("No such API.")
    at, form, error = _instant(request)
    state, missing = None, ""
    if at is not None:
        try:
            state = api_live_at(api=api, at=at)
        except ProductDidNotExist as exc:
            missing = exc.message
    response = render(
        request,
        "compliance/live_api.html",
        {"api": api, "at": at, "form": form, "error": error, "missing": missing, "state": state},
    )
    if error:
        response.status_code = 400
    return response

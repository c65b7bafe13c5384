"""Provider-call pages: the filterable list (``/calls/``) and one call (``/calls/<id>/``).

Reads go through ``gateway.selectors`` (a call out of scope is a 404) and the filters through
the one ``ProviderCallFilter`` the API uses, so a parameter means the same in both. A filter
that does not parse is a message on the page, never a 500. With htmx, the form's changes swap
the results only (and the release choices, which depend on the product); without JavaScript
the form submits as a plain GET.
"""

import uuid

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import HttpRequest
from django.shortcuts import get_object_or_404, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from apps.catalog.selectors import product_list_for
from apps.releases.selectors import release_list_for

from . import selectors
from .charts import fmt_cost, fmt_percent
from .filters import ProviderCallFilter
from .models import CallOutcome, CallSource

PAGE_SIZE = 25


def _partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _release_choices(request: HttpRequest) -> list[tuple[str, str]]:
    """The chosen product's releases (newest first), and the chosen release in any case."""
    product = request.GET.get("product", "").strip()
    chosen = _as_uuid(request.GET.get("release", "").strip())
    if not product and chosen is None:
        return []
    match = Q()
    if product:
        product_id = _as_uuid(product)
        match |= Q(product_id=product_id) if product_id else Q(product__slug=product)
    if chosen is not None:
        match |= Q(pk=chosen)
    releases = (
        release_list_for(user=request.user)
        .filter(match)
        .prefetch_related(None)
        .order_by("-created_at")
        .values_list("pk", "version")[:100]
    )
    return [(str(pk), version) for pk, version in releases]


def _page_form(filterset: ProviderCallFilter, request: HttpRequest) -> forms.Form:
    """The filter set's form with the page's widgets: choices of what the user may see."""
    form = filterset.form
    user = request.user
    # Products by slug; one named by id (the API's other spelling) keeps that value, so it shows
    # as selected.
    named = request.GET.get("product", "")
    by_id = _as_uuid(named.strip())
    products = [
        (named if pk == by_id else slug, name)
        for pk, slug, name in product_list_for(user=user)
        .order_by("name")
        .values_list("pk", "slug", "name")
    ]
    providers = selectors.provider_list_for(user=user).values_list("slug", "name")
    releases = _release_choices(request)
    release_hint = "All releases" if releases or request.GET.get("product") else "Pick a product"
    widgets = {
        "product": forms.Select(choices=[("", "All products"), *products]),
        "release": forms.Select(choices=[("", release_hint), *releases]),
        "provider": forms.Select(choices=[("", "All providers"), *providers]),
        "outcome": forms.Select(choices=[("", "Any outcome"), *CallOutcome.choices]),
        "source": forms.Select(choices=[("", "Any source"), *CallSource.choices]),
        "cache_hit": forms.Select(
            choices=[("", "Cached or not"), ("true", "Cache hits"), ("false", "Not cached")]
        ),
        "created_after": forms.DateInput(attrs={"type": "date"}),
        "created_before": forms.DateInput(attrs={"type": "date"}),
    }
    labels = {
        "product": "Product",
        "release": "Release",
        "provider": "Provider",
        "cache_hit": "Cache",
        "created_after": "From",
        "created_before": "To",
    }
    for name, widget in widgets.items():
        field = form.fields[name]
        field.widget = widget
        field.label = labels.get(name, field.label)
        widget.attrs["aria-label"] = str(field.label)
    return form


@login_required
@require_GET
def call_list(request):
    calls = selectors.provider_call_list_for(user=request.user)
    filterset = ProviderCallFilter(request.GET, queryset=calls, request=request)
    form = _page_form(filterset, request)
    context = {
        "form": form,
        "partial": _partial(request),
        "filtered": any(request.GET.get(name) for name in form.fields),
        "page": None,
        "summary": None,
    }
    if filterset.is_valid():
        filtered_calls = filterset.qs
        summary = selectors.provider_call_summary(filtered_calls)
        paginator = Paginator(filtered_calls, PAGE_SIZE)
        paginator.count = summary.calls  # the summary counted them already: no second COUNT
        context["page"] = paginator.get_page(request.GET.get("page"))
        context["summary"] = summary
        context["error_rate"] = (
            fmt_percent(summary.error_rate) if summary.error_rate is not None else "—"
        )
        context["total_cost"] = fmt_cost(summary.cost)
    template = (
        "gateway/partials/call_results.html" if context["partial"] else "gateway/call_list.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def call_detail(request, pk):
    calls = selectors.provider_call_list_for(user=request.user).select_related(
        "release", "model_version__model", "prompt_version__prompt"
    )
    call = get_object_or_404(calls, pk=pk)
    return render(request, "gateway/call_detail.html", {"call": call})

"""The audit trail's pages: the filterable trail (``/audit/``), its exports
(``/audit/export/?format=csv|json``) and the history of one object
(``/audit/history/<object_type>/<object_id>/``).

Reads go through ``audit.selectors`` (who may browse, and which events: see its docstring) and
the filters through the one ``AuditEventFilter`` the API uses. The trail is keyset-paginated on
``seq``, newest first (``?before=<seq>`` older, ``?after=<seq>`` newer): no page counts the
matching events, so a page costs the same with a thousand events as with a million. A filter
that does not parse is a message on the page, never a 500. With htmx, the form's changes swap
the results only; without JavaScript the form submits as a plain GET.
"""

from __future__ import annotations

import json

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponseBadRequest
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from apps.core.hashing import to_jsonable

from . import selectors
from .exports import FORMATS, export_response
from .filters import AuditEventFilter, filter_params
from .history_browse import UnknownObjectType, display, is_browsable, object_history

PAGE_SIZE = 50


def _partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _cursor(request: HttpRequest, name: str) -> int | None:
    value = request.GET.get(name, "").strip()
    return int(value) if value.isdigit() and len(value) < 19 else None


def _require_browser(user) -> None:
    if not selectors.trail_may_browse(user):
        raise PermissionDenied(
            "The audit trail is read by auditors, and by the product managers and admins of a "
            "team for their team's products."
        )


def _page_form(filterset: AuditEventFilter, request: HttpRequest) -> forms.Form:
    """The filter set's form with the page's widgets (choices: what the user may see)."""
    form = filterset.form
    products = selectors.trail_products_for(user=request.user)
    named = request.GET.get("product", "").strip()
    if named and named not in {pk for pk, _ in products}:
        # A product named by slug (the API's other spelling) keeps its value, so it shows.
        products = [(named if slug == named else pk, slug) for pk, slug in products]
    types = selectors.known_object_types()
    widgets = {
        "actor": forms.TextInput(attrs={"placeholder": "username"}),
        "object_type": forms.Select(choices=[("", "All object types"), *types]),
        "object_id": forms.TextInput(attrs={"placeholder": "id"}),
        "product": forms.Select(choices=[("", "All products"), *products]),
        "verb": forms.TextInput(attrs={"placeholder": "e.g. subscription. or release.released"}),
        "at_after": forms.DateInput(attrs={"type": "date"}),
        "at_before": forms.DateInput(attrs={"type": "date"}),
    }
    labels = {
        "actor": "User",
        "object_type": "Object type",
        "object_id": "Object id",
        "product": "Product",
        "verb": "Event type",
        "at_after": "From",
        "at_before": "To",
    }
    del form.fields["verb_prefix"]  # the page spells a family as ``verb=subscription.``
    for name, widget in widgets.items():
        field = form.fields[name]
        field.widget = widget
        field.label = labels[name]
        widget.attrs["aria-label"] = labels[name]
    return form


def _changes(event) -> list[tuple[str, str, str]]:
    """(field, old, new) of an event's before/after, for the expandable row."""
    before = event.before if isinstance(event.before, dict) else {}
    after = event.after if isinstance(event.after, dict) else {}
    if not isinstance(event.before, dict | type(None)) or not isinstance(
        event.after, dict | type(None)
    ):
        return [("value", display(event.before), display(event.after))]
    keys = list(dict.fromkeys([*before, *after]))
    return [(key, display(before.get(key)), display(after.get(key))) for key in keys]


def _decorate(events: list) -> None:
    slugs = selectors.product_slugs(e.product_id for e in events)
    for event in events:
        event.product_slug = slugs.get(event.product_id, "")
        event.history_link = bool(event.object_id) and is_browsable(event.object_type)
        event.changes = _changes(event)
        event.raw = json.dumps(
            {"before": to_jsonable(event.before), "after": to_jsonable(event.after)},
            indent=2,
            ensure_ascii=False,
            sort_keys=True,
        )


@login_required
@require_GET
def trail(request):
    user = request.user
    _require_browser(user)
    events = selectors.audit_event_list_for(user=user)
    filterset = AuditEventFilter(request.GET, queryset=events, request=request)
    form = _page_form(filterset, request)
    params = filter_params(request.GET)
    context = {
        "form": form,
        "partial": _partial(request),
        "filtered": bool(params),
        "params": params,
        "page": None,
        "sees_everything": selectors.trail_sees_everything(user),
    }
    if filterset.is_valid():
        page = selectors.keyset_page(
            filterset.qs,
            before=_cursor(request, "before"),
            after=_cursor(request, "after"),
            size=PAGE_SIZE,
        )
        _decorate(page.events)
        context["page"] = page
    template = "audit/partials/trail_results.html" if context["partial"] else "audit/trail.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def trail_export(request):
    user = request.user
    _require_browser(user)
    fmt = request.GET.get("format", "csv")
    if fmt not in FORMATS:
        return HttpResponseBadRequest("format must be csv or json.")
    filterset = AuditEventFilter(
        request.GET, queryset=selectors.audit_event_list_for(user=user), request=request
    )
    if not filterset.is_valid():
        errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in filterset.errors.items())
        return HttpResponseBadRequest(f"These filters cannot be applied: {errors}")
    return export_response(
        qs=filterset.qs,
        fmt=fmt,
        actor=user,
        filters=filter_params(request.GET),
        ip_address=request.META.get("REMOTE_ADDR", ""),
    )


@login_required
@require_GET
def object_history_page(request, object_type: str, object_id: str):
    user = request.user
    _require_browser(user)
    try:
        found = object_history(object_type=object_type, object_id=object_id)
    except UnknownObjectType:
        raise Http404("No such object type, or it keeps no history.") from None
    if not selectors.object_in_scope(user=user, object_type=object_type, object_id=object_id):
        raise Http404("No such object in your scope.")
    events = selectors.object_events(user=user, object_type=object_type, object_id=object_id)
    if found is None and not events:
        raise Http404("This object has no history.")
    _decorate(events)
    return render(
        request,
        "audit/history.html",
        {
            "history": found,
            "object_type": object_type,
            "object_id": object_id,
            "events": events,
        },
    )

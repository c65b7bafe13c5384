"""What the portal's pages share: the htmx partial switch, the service-error mapping, paging,
safe "back to" URLs and the usage charts of a page."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.http import url_has_allowed_host_and_scheme

from apps.core.exceptions import ApplicationError

from . import selectors
from .charts import usage_windows

PAGE_SIZE = 25
EXPIRING_DAYS = 7


def partial(request: HttpRequest) -> bool:
    """An htmx request for a fragment (not htmx restoring a page from its history)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def render_page(request, full: str, fragment: str, context: dict, status: int = 200):
    response = render(request, fragment if partial(request) else full, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def refuse_or_404(exc: ApplicationError) -> None:
    if exc.status == 403:
        raise PermissionDenied(exc.message)
    if exc.status == 404:
        raise Http404(exc.message)


def add_service_error(form, exc: ApplicationError, aliases: dict[str, str] | None = None) -> None:
    """Show a service's refusal on the form: per-field messages where a field matches, and the
    message itself as the form's error."""
    refuse_or_404(exc)
    for key, errors in (exc.extra or {}).items():
        name = (aliases or {}).get(key, key)
        if name in form.fields:
            for error in errors if isinstance(errors, list) else [errors]:
                form.add_error(name, str(error))
    form.add_error(None, exc.message)


def page_of(request: HttpRequest, queryset, size: int = PAGE_SIZE, param: str = "page"):
    return Paginator(queryset, size).get_page(request.GET.get(param))


def next_url(request: HttpRequest, default: str) -> str:
    """The ``next`` the form posted when it is a URL of this site, else ``default``."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def no_store(response: HttpResponse) -> HttpResponse:
    """A response holding a secret: never cached, by the browser or anything in between."""
    response["Cache-Control"] = "no-store, no-cache, must-revalidate, private, max-age=0"
    response["Pragma"] = "no-cache"
    return response


def key_status(key, now=None) -> str:
    """active, expiring (within a week), in grace (rotated, still working), expired, revoked."""
    now = now or timezone.now()
    if key.revoked_at:
        return "revoked"
    if key.grace_ends_at:
        return "in grace" if now < key.grace_ends_at and now < key.expires_at else "expired"
    if key.expires_at <= now:
        return "expired"
    if (key.expires_at - now).days < EXPIRING_DAYS:
        return "expiring"
    return "active"


def usage(**scope) -> list:
    """The two usage windows of an API, an application or a subscription."""

    def series(**kwargs):
        return selectors.usage_series(**scope, **kwargs)

    return usage_windows(series)

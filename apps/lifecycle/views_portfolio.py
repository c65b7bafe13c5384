"""The portfolio page (``/portfolio/``) and its CSV export (``/portfolio/export.csv``).

Reads go through ``portfolio`` (scoped by the catalog's ``product_list_for``). A filter value
that does not parse is shown as a message on the page and ignored, never a 500; the export
refuses it (400) rather than export something other than what was asked. With htmx, the form's
changes swap the results only (summary, table, pagination); without JavaScript it submits as a
plain GET. Each export is recorded in the audit trail (``portfolio.exported``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from apps.catalog.models import RiskClass, Stage

from .portfolio import (
    MET_CHOICES,
    portfolio_csv_lines,
    portfolio_export_record,
    portfolio_filters,
    portfolio_for,
    portfolio_teams,
)

PAGE_SIZE = 25
MET_LABELS = {"yes": "All targets met", "no": "Some targets not met", "none": "No targets"}


def _partial(request: HttpRequest) -> bool:
    """An htmx request for a fragment (not htmx restoring a page from its history)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _query(params: dict[str, str]) -> str:
    return f"?{urlencode(params)}" if params else ""


@login_required
@require_GET
def portfolio(request: HttpRequest) -> HttpResponse:
    filters, errors = portfolio_filters(request.GET)
    result = portfolio_for(user=request.user, filters=filters)
    page = Paginator(result.products, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = result.rows(page.object_list)
    params = filters.as_params()
    url = reverse("portfolio")
    summary = [
        {
            "stage": s.stage,
            "count": s.count,
            "percent": s.percent,
            "url": url + _query({**params, "stage": s.stage}),
            "selected": s.stage == filters.stage,
        }
        for s in result.summary
    ]
    context = {
        "filters": filters,
        "errors": errors,
        "page": page,
        "rows": rows,
        "summary": summary,
        "summary_total": result.total,
        "summary_label": ", ".join(f"{s.stage}: {s.count}" for s in result.summary if s.count),
        "all_stages_url": url + _query({k: v for k, v in params.items() if k != "stage"}),
        "export_url": reverse("portfolio_export") + _query(params),
        "stages": Stage.values,
        "risk_classes": RiskClass.values,
        "met_choices": [(value, MET_LABELS[value]) for value in MET_CHOICES],
    }
    if not _partial(request):  # the filter form's choices: the full page only
        teams = list(portfolio_teams(user=request.user))
        context["teams"] = teams
        # A team slug matching none of them (none of yours) still shows as the filter in force.
        context["other_team"] = filters.team not in {t.slug for t in teams} and filters.team
    template = (
        "lifecycle/partials/portfolio_table.html"
        if _partial(request)
        else "lifecycle/portfolio.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def portfolio_export(request: HttpRequest) -> HttpResponse:
    filters, errors = portfolio_filters(request.GET)
    if errors:
        return HttpResponseBadRequest(
            "These filters cannot be applied: " + " ".join(errors.values()),
            content_type="text/plain; charset=utf-8",
        )
    result = portfolio_for(user=request.user, filters=filters)
    lines = list(portfolio_csv_lines(result.all_rows()))
    portfolio_export_record(
        actor=request.user,
        count=len(lines) - 1,
        filters=filters.as_params(),
        ip_address=request.META.get("REMOTE_ADDR", ""),
    )
    response = HttpResponse("".join(lines), content_type="text/csv; charset=utf-8")
    today = timezone.now().date().isoformat()
    response["Content-Disposition"] = f'attachment; filename="portfolio-{today}.csv"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response

"""Incident pages: a product's incidents with the filing form, and one incident with its update
form and status actions. Reads through ``selectors`` (out of scope: 404), writes through one
service call each; a refusal is a form error or a message, a refused role a 403."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.core.exceptions import ApplicationError
from apps.core.pages import form_error, refuse_or_404

from . import selectors, services
from .forms import IncidentForm, IncidentStatusForm, IncidentUpdateForm
from .models import IncidentStatus, Severity
from .views_live import product_by_key

PAGE_SIZE = 25


@login_required
@require_http_methods(["GET", "POST"])
def product_incidents(request, key):
    product = product_by_key(request.user, key)
    can_file = selectors.can_file_incident(request.user, product)
    form = IncidentForm(product=product) if can_file else None
    if request.method == "POST":
        if not can_file:
            raise PermissionDenied("Only members of the product's team file incidents.")
        form = IncidentForm(request.POST, product=product)
        if form.is_valid():
            data = form.cleaned_data
            try:
                incident = services.incident_file(
                    actor=request.user,
                    product=product,
                    title=data["title"],
                    severity=data["severity"],
                    description=data["description"],
                    actions_taken=data["actions_taken"],
                    occurred_at=data["occurred_at"],
                    release=data["release"],
                )
            except ApplicationError as exc:
                form_error(form, exc)
            else:
                messages.success(request, f"Incident “{incident.title}” filed.")
                return redirect("incident_detail", pk=incident.pk)
    qs = selectors.incident_list_for_product(product=product)
    status = request.GET.get("status", "")
    severity = request.GET.get("severity", "")
    if status in IncidentStatus.values:
        qs = qs.filter(status=status)
    if severity in Severity.values:
        qs = qs.filter(severity=severity)
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    response = render(
        request,
        "compliance/incident_list.html",
        {
            "product": product,
            "page": page,
            "incidents": page.object_list,
            "form": form,
            "can_file": can_file,
            "status": status,
            "severity": severity,
            "statuses": IncidentStatus.values,
            "severities": Severity.choices,
        },
    )
    if request.method == "POST":
        response.status_code = 400
    return response


@login_required
@require_http_methods(["GET", "POST"])
def incident_detail(request, pk):
    incident = get_object_or_404(selectors.incident_list_for(user=request.user), pk=pk)
    can_change = selectors.can_file_incident(request.user, incident.product)
    form = IncidentUpdateForm(instance=incident) if can_change else None
    if request.method == "POST":
        if not can_change:
            raise PermissionDenied("Only members of the product's team update incidents.")
        form = IncidentUpdateForm(request.POST, instance=incident)
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.incident_update(
                    actor=request.user,
                    incident=incident,
                    title=data["title"],
                    severity=data["severity"],
                    description=data["description"],
                    actions_taken=data["actions_taken"],
                    occurred_at=data["occurred_at"] or incident.occurred_at,
                    resolved_at=data["resolved_at"],
                    release=data["release"],
                )
            except ApplicationError as exc:
                form_error(form, exc)
            else:
                messages.success(request, "Incident updated.")
                return redirect("incident_detail", pk=incident.pk)
        incident.refresh_from_db()
    history = list(incident.history.select_related("history_user").order_by("-history_date")[:50])
    response = render(
        request,
        "compliance/incident_detail.html",
        {
            "incident": incident,
            "product": incident.product,
            "form": form,
            "status_form": IncidentStatusForm(incident=incident) if can_change else None,
            "can_change": can_change,
            "history": history,
        },
    )
    if request.method == "POST":
        response.status_code = 400
    return response


@login_required
@require_POST
def incident_status(request, pk):
    incident = get_object_or_404(selectors.incident_list_for(user=request.user), pk=pk)
    if not selectors.can_file_incident(request.user, incident.product):
        raise PermissionDenied("Only members of the product's team update incidents.")
    try:
        incident = services.incident_transition(
            actor=request.user,
            incident=incident,
            to_status=request.POST.get("status", ""),
            note=request.POST.get("note", ""),
        )
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Incident is now {incident.status}.")
    return redirect("incident_detail", pk=incident.pk)

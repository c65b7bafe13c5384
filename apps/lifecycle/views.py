"""Lifecycle pages: the product page's lifecycle section, the brief and the assessment pages,
and the request, sign, reject and withdraw actions. Reads through the selectors (out of scope:
404), each write through one service call; a refusal is a message or a form error, a refused
role a 403."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.roles import ADMIN, PRODUCT_MANAGER
from apps.catalog.models import STAGE_TRANSITIONS, Product, Stage
from apps.catalog.selectors import product_list_for
from apps.core.exceptions import ApplicationError
from apps.core.pages import form_error, refuse_or_404
from apps.gateway.models import ProviderCall
from apps.portal.models import APIStatus, PublishedAPI

from . import gates, metrics, selectors, services
from .forms import AssessmentForm, BriefForm, SignForm, StageRequestForm
from .models import Assessment, BriefStatus, RequestState

SPARK_W, SPARK_H = 120, 28


def _product(request, pk) -> Product:
    return get_object_or_404(
        product_list_for(user=request.user).select_related("owner_team"), pk=pk
    )


def _is_author(user, product: Product) -> bool:
    return user.is_superuser or user.has_role(PRODUCT_MANAGER, ADMIN, team=product.owner_team)


def sparkline(values: list[float]) -> str:
    """SVG polyline points for a small trend chart (empty under two points)."""
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = SPARK_W / (len(values) - 1)
    return " ".join(
        f"{i * step:.1f},{SPARK_H - 2 - (v - low) / span * (SPARK_H - 4):.1f}"
        for i, v in enumerate(values)
    )


def actual_monthly_cost(product: Product) -> Decimal | None:
    since = timezone.now() - dt.timedelta(days=30)
    total = ProviderCall.objects.filter(product=product, created_at__gte=since).aggregate(
        cost=Sum("cost")
    )["cost"]
    return None if total is None else Decimal(total).quantize(Decimal("0.01"))


def lifecycle_context(request, product: Product) -> dict:
    """The product page's lifecycle section."""
    user = request.user
    brief = selectors.brief_in_force(product=product)
    assessment = Assessment.objects.filter(product=product).select_related("model_version").first()
    pending = selectors.pending_request(product=product)
    can_request = _is_author(user, product) and product.stage != Stage.RETIRED
    moves = []
    for stage in STAGE_TRANSITIONS[product.stage]:
        checks = gates.checklist(product, stage)
        moves.append(
            {
                "stage": stage,
                "checks": checks,
                "ready": all(c.met for c in checks),
                "backward": gates.is_backward(product, stage),
                "needs_sunset": stage == Stage.DEPRECATED,
            }
        )
    can_sign, sign_refusal = False, ""
    if pending is not None:
        try:
            services.signer_role(user, pending)
            can_sign = True
        except ApplicationError as exc:
            sign_refusal = exc.message
    measured = metrics.measure(product=product, targets=brief.target_metrics if brief else [])
    return {
        "brief": brief,
        "proposed_brief": product.briefs.filter(status=BriefStatus.PROPOSED).first(),
        "assessment": assessment,
        "estimate": services.monthly_estimate(assessment) if assessment else None,
        "actual_cost": actual_monthly_cost(product),
        "moves": moves,
        "pending": pending,
        "pending_checks": (
            gates.checklist(product, pending.to_stage, services.request_facts(pending))
            if pending is not None and pending.kind == "stage"
            else []
        ),
        "can_request": can_request,
        "can_sign": can_sign,
        "sign_refusal": sign_refusal,
        "can_withdraw": pending is not None
        and (pending.requested_by_id == user.pk or user.has_role(ADMIN, team=product.owner_team)),
        "measurements": [
            {"m": m, "points": sparkline(m.trend), "w": SPARK_W, "h": SPARK_H} for m in measured
        ],
        "sign_form": SignForm(),
        "migration": (
            selectors.migration_status_for(product=product)
            if product.stage == Stage.DEPRECATED
            else []
        ),
        "history": selectors.request_list_for(user=user).filter(product=product)[:10],
        "successors": PublishedAPI.objects.filter(status=APIStatus.PUBLISHED)
        .exclude(product=product)
        .filter(product__in=product_list_for(user=user))
        .order_by("slug")
        .values_list("slug", flat=True),
    }


@login_required
@require_http_methods(["GET", "POST"])
def brief_page(request, pk):
    product = _product(request, pk)
    current = selectors.brief_in_force(product=product)
    author = _is_author(request.user, product)
    form = BriefForm(initial=BriefForm.initial_from(current)) if author else None
    if request.method == "POST":
        if not author:
            raise PermissionDenied(
                "Only the product's product managers and admins write its brief."
            )
        form = BriefForm(request.POST)
        if form.is_valid():
            try:
                brief = services.brief_create(
                    actor=request.user, product=product, **form.service_kwargs()
                )
            except ApplicationError as exc:
                form_error(form, exc)
            else:
                if brief.status == BriefStatus.IN_FORCE:
                    messages.success(request, f"Brief v{brief.version} is in force.")
                else:
                    messages.success(
                        request,
                        f"Brief v{brief.version} is proposed: it comes into force once someone "
                        "else signs the change.",
                    )
                return redirect("product_detail", pk=product.pk)
    versions = product.briefs.select_related("created_by").order_by("-version")
    return render(
        request,
        "lifecycle/brief.html",
        {
            "product": product,
            "brief": current,
            "versions": versions,
            "form": form,
            "after_design": product.stage not in services.BRIEF_FREE_STAGES,
            "describe": metrics.describe,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def assessment_page(request, pk):
    product = _product(request, pk)
    current = Assessment.objects.filter(product=product).select_related("model_version").first()
    author = _is_author(request.user, product)
    form = (
        AssessmentForm(initial=AssessmentForm.initial_from(current), product=product)
        if author
        else None
    )
    if request.method == "POST":
        if not author:
            raise PermissionDenied("Only the product's product managers and admins assess it.")
        form = AssessmentForm(request.POST, product=product)
        if form.is_valid():
            try:
                services.assessment_set(actor=request.user, product=product, **form.cleaned_data)
            except ApplicationError as exc:
                form_error(form, exc)
            else:
                messages.success(request, "Assessment saved.")
                return redirect("product_detail", pk=product.pk)
    return render(
        request,
        "lifecycle/assessment.html",
        {
            "product": product,
            "assessment": current,
            "estimate": services.monthly_estimate(current) if current else None,
            "actual_cost": actual_monthly_cost(product),
            "form": form,
        },
    )


@login_required
@require_POST
def request_create(request, pk):
    product = _product(request, pk)
    form = StageRequestForm(request.POST)
    if not form.is_valid():
        messages.error(
            request,
            "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()),
        )
        return redirect("product_detail", pk=product.pk)
    d = form.cleaned_data
    successor = None
    if d["successor"]:
        successor = PublishedAPI.objects.filter(slug=d["successor"]).first()
        if successor is None:
            messages.error(request, f"No published API {d['successor']!r}.")
            return redirect("product_detail", pk=product.pk)
    try:
        req = services.stage_request_create(
            actor=request.user,
            product=product,
            to_stage=d["to_stage"],
            comment=d["comment"],
            sunset_at=d["sunset_at"],
            migration_note=d["migration_note"],
            successor=successor,
        )
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Move to {req.to_stage} requested: someone else signs it.")
    return redirect("product_detail", pk=product.pk)


def _request(request, pk):
    return get_object_or_404(selectors.request_list_for(user=request.user), pk=pk)


def _decide(request, pk, *, reject: bool):
    req = _request(request, pk)
    form = SignForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Sign with your password.")
        return redirect("product_detail", pk=req.product_id)
    try:
        if reject:
            services.request_reject(
                actor=request.user,
                request=req,
                password=form.cleaned_data["password"],
                comment=form.cleaned_data["comment"],
            )
        else:
            req = services.request_approve(
                actor=request.user,
                request=req,
                password=form.cleaned_data["password"],
                comment=form.cleaned_data["comment"],
            )
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        if reject:
            messages.success(request, "Rejected.")
        elif req.kind == "brief":
            messages.success(request, "Signed: the brief is in force.")
        else:
            messages.success(request, f"Signed: {req.product.name} is now in {req.to_stage}.")
    return redirect("product_detail", pk=req.product_id)


@login_required
@require_POST
def request_approve(request, pk):
    return _decide(request, pk, reject=False)


@login_required
@require_POST
def request_reject(request, pk):
    return _decide(request, pk, reject=True)


@login_required
@require_POST
def request_withdraw(request, pk):
    req = _request(request, pk)
    try:
        services.request_withdraw(actor=request.user, request=req)
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, "Request withdrawn.")
    return redirect("product_detail", pk=req.product_id)


__all__ = ["RequestState", "lifecycle_context"]

"""Subscriptions: a developer's request (from an API's page) and cancellation; the approvers'
queue with its counts per API and plan; approve, reject, suspend and resume.

Who may decide comes from the selectors (``subscription_queue_for``, ``can_decide``) and is
checked again by the services; a subscription out of the user's scope is a 404.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.core.exceptions import ApplicationError

from . import selectors, services
from .context_processors import may_decide
from .forms import ApproveForm, ReasonForm, SubscribeForm
from .models import Plan, Subscription, SubscriptionState
from .views import _api_or_404, _render_api
from .views_base import add_service_error, next_url, page_of, refuse_or_404


def _subscription_or_404(request, pk) -> Subscription:
    return get_object_or_404(selectors.subscription_list_for(user=request.user), pk=pk)


@login_required
@require_POST
def subscribe(request, slug):
    api = _api_or_404(request, slug)
    user = request.user
    form = SubscribeForm(
        request.POST,
        applications=selectors.application_list_for(user=user).filter(owner=user),
        plans=Plan.objects.filter(api=api, active=True),
    )
    if form.is_valid():
        app = form.cleaned_data["application"]
        try:
            sub = services.subscription_request(
                actor=user,
                application=app,
                plan=form.cleaned_data["plan"],
                justification=form.cleaned_data["justification"],
            )
        except ApplicationError as exc:
            add_service_error(form, exc)
        else:
            if sub.state == SubscriptionState.ACTIVE:
                messages.success(
                    request,
                    f"{app.name} is subscribed to {api.slug} ({sub.plan.name}): active. "
                    "Create a key to call it.",
                )
            else:
                messages.info(
                    request,
                    f"{app.name}'s subscription to {api.slug} ({sub.plan.name}) is pending "
                    "approval: you will be notified of the decision.",
                )
            return redirect("portal_application_detail", pk=app.pk)
    return _render_api(request, api, subscribe_form=form)


@login_required
@require_POST
def subscription_cancel(request, pk):
    sub = _subscription_or_404(request, pk)
    try:
        services.subscription_cancel(actor=request.user, subscription=sub)
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"The subscription of {sub.application.name} to {sub.api.slug} is cancelled."
        )
    return redirect(
        next_url(request, reverse("portal_application_detail", args=[sub.application_id]))
    )


# --- the approvers' queue ----------------------------------------------------------------------


def _queue_context(request, errors: dict | None = None) -> dict:
    user = request.user
    queue = selectors.subscription_queue_for(user=user)
    page = page_of(request, queue)
    errors = errors or {}
    rows = [
        {
            "subscription": s,
            "reject_form": errors.get(s.pk) or ReasonForm(prefix=f"reject-{s.pk}"),
            "approve_form": ApproveForm(prefix=f"approve-{s.pk}"),
        }
        for s in page.object_list
    ]
    return {
        "page": page,
        "rows": rows,
        "counts": selectors.subscription_queue_counts(user=user),
        "may_decide": user.is_superuser or bool(selectors.approver_team_ids(user)),
    }


@login_required
@require_GET
def subscription_queue(request):
    return render(request, "portal/queue.html", _queue_context(request))


def _decide(request, pk, action, done: str, default: str):
    sub = _subscription_or_404(request, pk)
    try:
        action(sub)
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, done.format(sub=sub))
    return redirect(next_url(request, default))


@login_required
@require_POST
def subscription_approve(request, pk):
    form = ApproveForm(request.POST, prefix=f"approve-{pk}")
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    return _decide(
        request,
        pk,
        lambda sub: services.subscription_approve(
            actor=request.user, subscription=sub, comment=comment
        ),
        "Approved: {sub.application.name} may now call {sub.api.slug} ({sub.plan.name}).",
        reverse("portal_subscription_queue"),
    )


@login_required
@require_POST
def subscription_reject(request, pk):
    sub = _subscription_or_404(request, pk)
    form = ReasonForm(request.POST, prefix=f"reject-{sub.pk}")
    if form.is_valid():
        try:
            services.subscription_reject(
                actor=request.user, subscription=sub, reason=form.cleaned_data["reason"]
            )
        except ApplicationError as exc:
            refuse_or_404(exc)
            add_service_error(form, exc)
        else:
            messages.success(
                request, f"Rejected: {sub.application.name} is told why ({sub.api.slug})."
            )
            return redirect(next_url(request, reverse("portal_subscription_queue")))
    messages.error(request, f"{sub.application.name}'s request was not rejected: give a reason.")
    return render(request, "portal/queue.html", _queue_context(request, {sub.pk: form}), status=400)


def _reason_action(request, pk, call, done: str):
    sub = _subscription_or_404(request, pk)
    default = reverse("portal_api_detail", args=[sub.api.slug]) + "#subscribers"
    form = ReasonForm(request.POST, prefix=f"suspend-{sub.pk}")
    if not form.is_valid():
        messages.error(request, "Give a reason: the subscriber sees it.")
        return redirect(next_url(request, default))
    return _decide(request, pk, lambda s: call(s, form.cleaned_data["reason"]), done, default)


@login_required
@require_POST
def subscription_suspend(request, pk):
    return _reason_action(
        request,
        pk,
        lambda sub, reason: services.subscription_suspend(
            actor=request.user, subscription=sub, reason=reason
        ),
        "Suspended: {sub.application.name}'s calls to {sub.api.slug} are refused until resumed.",
    )


@login_required
@require_POST
def subscription_resume(request, pk):
    sub = _subscription_or_404(request, pk)
    return _decide(
        request,
        pk,
        lambda s: services.subscription_resume(actor=request.user, subscription=s),
        "Resumed: {sub.application.name} may call {sub.api.slug} again.",
        reverse("portal_api_detail", args=[sub.api.slug]) + "#subscribers",
    )


@login_required
@require_GET
def nav_count(request):
    """The navigation's badge, fetched by htmx once the page has loaded: the number of pending
    requests the user may decide (one COUNT query), or nothing."""
    user = request.user
    pending = selectors.subscription_queue_for(user=user).count() if may_decide(user) else 0
    response = render(request, "portal/partials/nav_count.html", {"pending": pending})
    response["Cache-Control"] = "private, no-cache"
    return response

"""Portal pages: the API catalog, an API's page (docs, generated reference, plans, subscribe;
for its product's team the management section: status, docs, plans, subscribers, usage), and a
new API.

Every read goes through ``selectors`` (an API out of scope is a 404) and every write through one
service call; a service's refusal becomes a form error or a message, a refusal of the role a
403, never a 500. Applications and keys: ``views_applications``; subscriptions and the
approvers' queue: ``views_subscriptions``.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect
from guardian.shortcuts import get_objects_for_user

from apps.catalog.selectors import product_list_for
from apps.core.exceptions import ApplicationError
from apps.releases.models import ReleaseStatus
from apps.releases.selectors import release_current, release_list_for

from . import reference, selectors, services
from .forms import (
    APICreateForm,
    APIEditForm,
    ApplicationForm,
    DeprecateAPIForm,
    PlanForm,
    SubscribeForm,
)
from .markdown import render_markdown
from .models import APIStatus, Plan, PublishedAPI, SubscriptionState
from .views_base import (
    add_service_error,
    page_of,
    partial,
    refuse_or_404,
    render_page,
    usage,
)

SUBSCRIBERS_PAGE_SIZE = 25
SERVED_RELEASE_STATUSES = (ReleaseStatus.RELEASED, ReleaseStatus.DEPRECATED)


# --- helpers -----------------------------------------------------------------------------------


def _api_or_404(request, slug: str) -> PublishedAPI:
    return get_object_or_404(selectors.api_list_for(user=request.user), slug=slug)


def _require_change(request, api: PublishedAPI) -> None:
    if not selectors.can_change_product(request.user, api.product):
        raise PermissionDenied(
            f"Only product managers and admins of team {api.product.owner_team.slug} can "
            f"manage {api.slug}."
        )


def _changeable_products(user):
    return get_objects_for_user(
        user, "catalog.change_product", klass=product_list_for(user=user), with_superuser=True
    ).order_by("name")


def _releases_of(user, product):
    return (
        release_list_for(user=user)
        .filter(product=product, status__in=SERVED_RELEASE_STATUSES)
        .prefetch_related(None)
        .order_by("-created_at")
    )


def served_release(api: PublishedAPI):
    """The release the API answers with: its pin, or the product's current release."""
    return api.release if api.release_id else release_current(product=api.product)


def _plans(api: PublishedAPI, *, all_plans: bool):
    plans = Plan.objects.filter(api=api).order_by("requests_per_minute", "slug")
    return plans if all_plans else plans.filter(active=True)


# --- the catalog -------------------------------------------------------------------------------


@login_required
@require_GET
def catalog(request):
    user = request.user
    q = request.GET.get("q", "").strip()
    apis = selectors.api_catalog_for(user=user).prefetch_related(
        Prefetch(
            "plans",
            queryset=Plan.objects.filter(active=True).order_by("requests_per_minute", "slug"),
            to_attr="offered_plans",
        )
    )
    if q:
        apis = apis.filter(Q(name__icontains=q) | Q(slug__icontains=q) | Q(summary__icontains=q))
    apis = apis.order_by("name", "slug")
    context = {
        "page": page_of(request, apis),
        "q": q,
        "can_publish": user.is_superuser or bool(selectors.approver_team_ids(user)),
    }
    return render_page(request, "portal/catalog.html", "portal/partials/api_table.html", context)


# --- an API ------------------------------------------------------------------------------------


def _api_context(request, api: PublishedAPI, **forms) -> dict:
    user = request.user
    can_manage = selectors.can_change_product(user, api.product)
    can_decide = selectors.can_decide(user, api)
    release = served_release(api)
    schema = release.prompt_version.variables_schema if release else {}
    variables = reference.example_variables(schema)
    applications = selectors.application_list_for(user=user).filter(owner=user).order_by("name")
    plans = list(_plans(api, all_plans=can_manage))
    offered = [p for p in plans if p.active]
    mine = list(
        selectors.subscription_list_for(user=user)
        .filter(api=api, application__owner=user)
        .order_by("-created_at")
    )
    live = {s.application_id for s in mine if s.state in ("pending", "active", "suspended")}
    context = {
        "api": api,
        "product": api.product,
        "release": release,
        "docs_html": render_markdown(api.docs),
        "migration_html": render_markdown(api.migration_note),
        "schema": schema,
        "schema_json": reference.json.dumps(schema or {}, indent=2, ensure_ascii=False),
        "reference_rows": reference.reference_rows(schema),
        "examples": reference.examples(api.slug, variables),
        "plans": plans,
        "offered_plans": offered,
        "my_subscriptions": mine,
        "has_applications": applications.exists(),
        "subscribe_form": forms.get("subscribe_form")
        or SubscribeForm(
            applications=applications.exclude(pk__in=live),
            plans=_plans(api, all_plans=False),
            initial=_subscribe_initial(request, offered),
        ),
        "application_form": ApplicationForm(),
        "can_subscribe": api.status == APIStatus.PUBLISHED and bool(offered),
        "can_manage": can_manage,
        "can_decide": can_decide,
    }
    if can_manage:
        subscribers = (
            selectors.subscription_list_for(user=user)
            .filter(api=api)
            .order_by("state", "-created_at")
        )
        context |= {
            "edit_form": forms.get("edit_form")
            or APIEditForm(
                releases=_releases_of(user, api.product),
                initial={
                    "name": api.name,
                    "summary": api.summary,
                    "docs": api.docs,
                    "release": api.release_id,
                },
            ),
            "deprecate_form": forms.get("deprecate_form")
            or DeprecateAPIForm(successors=_successors(user, api)),
            "subscribers": page_of(request, subscribers, SUBSCRIBERS_PAGE_SIZE),
            "usage": usage(api=api),
            "usage_scope": api.slug,
            "subscriber_counts": _state_counts(subscribers),
        }
    return context


def _subscribe_initial(request, offered: list) -> dict:
    """The only plan, and the application named by ``?application=`` (just created)."""
    initial = {"plan": offered[0].pk} if len(offered) == 1 else {}
    if request.GET.get("application"):
        initial["application"] = request.GET["application"]
    return initial


def _state_counts(subscriptions) -> dict:
    counts = dict.fromkeys(SubscriptionState.values, 0)
    for row in subscriptions.order_by().values_list("state", flat=True):
        counts[row] += 1
    return counts


def _successors(user, api: PublishedAPI):
    return (
        selectors.api_list_for(user=user)
        .filter(status=APIStatus.PUBLISHED)
        .exclude(pk=api.pk)
        .order_by("slug")
    )


def _render_api(request, api: PublishedAPI, status: int = 200, **forms):
    return render(
        request, "portal/api_detail.html", _api_context(request, api, **forms), status=status
    )


@login_required
@require_GET
def api_detail(request, slug):
    return _render_api(request, _api_or_404(request, slug))


@login_required
@require_http_methods(["GET", "POST"])
def api_create(request):
    user = request.user
    products = _changeable_products(user)
    releases = (
        release_list_for(user=user)
        .filter(product__in=products, status__in=SERVED_RELEASE_STATUSES)
        .prefetch_related(None)
        .order_by("product__slug", "-created_at")
    )
    if not user.is_superuser and not products.exists():
        raise PermissionDenied(
            "Only product managers and admins publish APIs, for the products of their teams."
        )
    initial = {}
    if request.GET.get("product"):
        found = products.filter(slug=request.GET["product"]).first()
        if found:
            initial = {"product": found.pk, "slug": found.slug, "name": found.name}
    form = APICreateForm(
        request.POST or None, products=products, releases=releases, initial=initial
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            api = services.api_create(
                actor=user,
                product=data["product"],
                slug=data["slug"],
                name=data["name"],
                summary=data["summary"],
                docs=data["docs"],
                release=data["release"],
            )
        except ApplicationError as exc:
            add_service_error(form, exc)
        else:
            messages.success(
                request,
                f"API “{api.name}” created as a draft: add a plan, then publish it.",
            )
            return redirect("portal_api_detail", slug=api.slug)
    return render(request, "portal/api_form.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def api_edit(request, slug):
    api = _api_or_404(request, slug)
    _require_change(request, api)
    form = APIEditForm(request.POST, releases=_releases_of(request.user, api.product))
    if request.method == "GET":
        return redirect(reverse("portal_api_detail", args=[api.slug]) + "#manage-docs")
    if form.is_valid():
        data = form.cleaned_data
        try:
            api = services.api_update(
                actor=request.user,
                api=api,
                name=data["name"],
                summary=data["summary"],
                docs=data["docs"],
                release=data["release"],
            )
        except ApplicationError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"{api.name}: docs and settings saved.")
            return redirect("portal_api_detail", slug=api.slug)
    return _render_api(request, _api_or_404(request, slug), edit_form=form)


def _status_action(request, slug, action, done: str):
    api = _api_or_404(request, slug)
    _require_change(request, api)
    try:
        api = action(api)
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(request, done.format(api=api))
    return redirect("portal_api_detail", slug=api.slug)


@login_required
@require_POST
def api_publish(request, slug):
    return _status_action(
        request,
        slug,
        lambda api: services.api_publish(actor=request.user, api=api),
        "{api.name} is published: developers find it in the catalog.",
    )


@login_required
@require_POST
def api_retire(request, slug):
    return _status_action(
        request,
        slug,
        lambda api: services.api_retire(actor=request.user, api=api),
        "{api.name} is retired: the gateway no longer answers it.",
    )


@login_required
@require_POST
def api_deprecate(request, slug):
    api = _api_or_404(request, slug)
    _require_change(request, api)
    form = DeprecateAPIForm(request.POST, successors=_successors(request.user, api))
    if form.is_valid():
        try:
            api = services.api_deprecate(
                actor=request.user,
                api=api,
                sunset_at=form.sunset_datetime(),
                migration_note=form.cleaned_data["migration_note"],
                successor=form.cleaned_data["successor"],
            )
        except ApplicationError as exc:
            add_service_error(form, exc)
        else:
            messages.success(
                request,
                f"{api.name} is deprecated: it answers until {api.sunset_at:%Y-%m-%d}.",
            )
            return redirect("portal_api_detail", slug=api.slug)
    messages.error(request, "The API was not deprecated: see the form below.")
    return _render_api(request, _api_or_404(request, slug), deprecate_form=form)


# --- plans -------------------------------------------------------------------------------------


def _plan_response(request, api, form, plan=None, backlog: int | None = None):
    context = {"api": api, "form": form, "plan": plan, "backlog": backlog}
    return render_page(request, "portal/plan_form.html", "portal/partials/plan_form.html", context)


def _done(request, api):
    url = reverse("portal_api_detail", args=[api.slug]) + "#plans"
    if partial(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)


@login_required
@require_http_methods(["GET", "POST"])
def plan_create(request, slug):
    api = _api_or_404(request, slug)
    _require_change(request, api)
    form = PlanForm(request.POST or None, initial={"approval_required": True})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            plan = services.plan_create(
                actor=request.user,
                api=api,
                slug=data["slug"],
                name=data["name"],
                requests_per_minute=data["requests_per_minute"],
                tokens_per_month=data["tokens_per_month"],
                approval_required=data["approval_required"],
                terms=data["terms"],
            )
        except ApplicationError as exc:
            add_service_error(form, exc)
        else:
            messages.success(request, f"Plan “{plan.name}” added to {api.slug}.")
            return _done(request, api)
    return _plan_response(request, api, form)


@login_required
@require_http_methods(["GET", "POST"])
def plan_edit(request, pk):
    plan = get_object_or_404(selectors.plan_list_for(user=request.user), pk=pk)
    api = _api_or_404(request, plan.api.slug)
    _require_change(request, api)
    initial = {
        "name": plan.name,
        "requests_per_minute": plan.requests_per_minute,
        "tokens_per_month": plan.tokens_per_month,
        "approval_required": plan.approval_required,
        "terms": plan.terms,
        "active": plan.active,
    }
    form = PlanForm(request.POST or None, initial=initial, editing=True)
    backlog = None
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            plan = services.plan_update(
                actor=request.user,
                plan=plan,
                name=data["name"],
                requests_per_minute=data["requests_per_minute"],
                tokens_per_month=data["tokens_per_month"],
                approval_required=data["approval_required"],
                terms=data["terms"],
                active=data["active"],
                approve_pending=form.approve_pending_answer(),
            )
        except ApplicationError as exc:
            if exc.code == "pending_backlog":
                backlog = _pending_count(exc)
            else:
                add_service_error(form, exc)
        else:
            messages.success(request, f"Plan “{plan.name}” saved.")
            return _done(request, api)
    return _plan_response(request, api, form, plan=plan, backlog=backlog)


def _pending_count(exc: ApplicationError) -> int:
    extra = exc.extra or {}
    for key in ("pending", "pending_count", "count"):
        value = extra.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, list) and value and str(value[0]).isdigit():
            return int(value[0])
    return next((v for v in extra.values() if isinstance(v, int)), 0)

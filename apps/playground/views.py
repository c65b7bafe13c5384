"""The playground and batch-run pages.

The playground: pick a release (or a prompt version + a model version); the variables form,
generated from the prompt's schema, is swapped in (htmx); submitting queues a run and swaps in a
result panel that polls every second until the worker is done, then shows the answer, tokens,
cost, latency and the rendered prompt. Batches: a form, a list, and a page whose progress bar
and rows are polled while the batch runs, with a cancel button and a JSONL download.

Reads go through the selectors (out of scope is a 404), every write through one service; a
service's refusal becomes a form error or a message, never a 500. Without JavaScript the pages
still work: a run's own page shows its result when reloaded.
"""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.catalog.selectors import (
    dataset_version_list_for,
    model_version_list_for,
    prompt_version_list_for,
)
from apps.core.exceptions import ApplicationError
from apps.core.pages import refuse_or_404
from apps.releases.selectors import release_list_for

from . import selectors, services
from .forms import BatchForm, TargetForm, VariablesForm
from .models import BatchState, ItemState
from .permissions import may_cancel, may_run, may_run_anywhere
from .results import results_response

PAGE_SIZE = 25
RECENT_PAGE_SIZE = 10
RUN_DONE_EVENT = "playground-run-done"
AUDITOR_NOTE = (
    "You can read runs but not start them: a run calls a model and costs money, so it takes a "
    "role in the team that owns the release (product manager, reviewer, developer or admin)."
)


# --- helpers -----------------------------------------------------------------------------------


def _partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _uuid_or_404(value) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise Http404("Not a valid id.") from None


def _target_querysets(user, *, for_batch: bool = False) -> dict:
    url = reverse("playground_variables") + ("?for=batch" if for_batch else "")
    return {
        "variables_url": url,
        "releases": release_list_for(user=user)
        .prefetch_related(None)
        .order_by("product__slug", "-created_at"),
        "prompt_versions": prompt_version_list_for(user=user).order_by("prompt__slug", "-version"),
        "model_versions": model_version_list_for(user=user)
        .prefetch_related(None)
        .order_by("model__slug", "-version"),
    }


def _schema_source(user, release_id, prompt_version_id):
    """The prompt version whose schema the variables form shows, or None (nothing picked)."""
    if release_id:
        release = get_object_or_404(
            release_list_for(user=user).prefetch_related(None), pk=_uuid_or_404(release_id)
        )
        return release.prompt_version
    if prompt_version_id:
        return get_object_or_404(
            prompt_version_list_for(user=user), pk=_uuid_or_404(prompt_version_id)
        )
    return None


def _picked_prompt(user, form: TargetForm, data):
    """The prompt version of the target picked in the bound ``form``: from its cleaned data
    when valid, else from the raw input (so the variables stay on screen while the target is
    fixed); None when nothing visible was picked."""
    if form.is_valid():
        picked = form.cleaned_data
        return picked["release"].prompt_version if picked["release"] else picked["prompt_version"]
    try:
        return _schema_source(user, data.get("release"), data.get("prompt_version"))
    except Http404:
        return None


def _variables_form(source, data=None, *, for_batch=False, initial=None):
    if source is None:
        return None
    return VariablesForm(
        data, schema=source.variables_schema, for_batch=for_batch, initial=initial or None
    )


def _place_error(target_form, variables_form, exc: ApplicationError) -> None:
    """Put a service's refusal on the forms: per-variable messages on their fields, others on
    the target form's fields when they name one, the message on top."""
    if variables_form is not None:
        variables_form.show_errors(exc.extra)
    for key, errors in exc.extra.items():
        if key in target_form.fields:
            for error in errors if isinstance(errors, list) else [errors]:
                target_form.add_error(key, str(error))
    target_form.add_error(None, exc.message)


# --- the playground ----------------------------------------------------------------------------


def _recent_runs(request: HttpRequest):
    runs = selectors.playground_run_list_for(user=request.user).filter(created_by=request.user)
    return Paginator(runs.order_by("-created_at", "pk"), RECENT_PAGE_SIZE).get_page(
        request.GET.get("page")
    )


def _workspace_context(request, form, variables_form, run=None) -> dict:
    return {
        "form": form,
        "variables_form": variables_form,
        "run": run,
        "can_run": may_run_anywhere(request.user),
        "auditor_note": AUDITOR_NOTE,
    }


@login_required
@require_GET
def playground(request):
    """The playground: the target and variables form, and the user's recent runs below."""
    user = request.user
    if _partial(request) and (
        request.GET.get("part") == "recent" or request.htmx.target == "recent-runs"
    ):
        response = render(
            request, "playground/partials/recent_runs.html", {"page": _recent_runs(request)}
        )
        patch_vary_headers(response, ["HX-Request"])
        return response
    initial: dict = {}
    variables_initial = None
    source = None
    if request.GET.get("from"):
        previous = get_object_or_404(
            selectors.playground_run_list_for(user=user), pk=_uuid_or_404(request.GET["from"])
        )
        initial = {
            "release": previous.release_id,
            "prompt_version": None if previous.release_id else previous.prompt_version_id,
            "model_version": None if previous.release_id else previous.model_version_id,
        }
        variables_initial = previous.variables
        source = previous.prompt_version
    else:
        for name in ("release", "prompt_version", "model_version"):
            if request.GET.get(name):
                initial[name] = _uuid_or_404(request.GET[name])
        source = _schema_source(user, request.GET.get("release"), request.GET.get("prompt_version"))
    form = TargetForm(initial=initial, **_target_querysets(user))
    context = _workspace_context(request, form, _variables_form(source, initial=variables_initial))
    context["page"] = _recent_runs(request)
    response = render(request, "playground/playground.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def playground_variables(request):
    """The variables form of the picked release or prompt version (htmx swaps it in)."""
    source = _schema_source(
        request.user, request.GET.get("release"), request.GET.get("prompt_version")
    )
    for_batch = request.GET.get("for") == "batch"
    response = render(
        request,
        "playground/partials/variables_form.html",
        {
            "variables_form": _variables_form(source, for_batch=for_batch),
            "for_batch": for_batch,
        },
    )
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def playground_run_create(request):
    """Queue a run. With htmx the workspace (form and result panel) is swapped in; without,
    the run's own page follows."""
    user = request.user
    form = TargetForm(request.POST, **_target_querysets(user))
    variables_form = _variables_form(_picked_prompt(user, form, request.POST), request.POST)
    run = None
    variables_ok = variables_form is not None and variables_form.is_valid()
    if form.is_valid() and variables_ok:
        try:
            run = services.playground_run_create(
                actor=user, **form.target(), variables=variables_form.variables()
            )
        except ApplicationError as exc:
            refuse_or_404(exc)
            _place_error(form, variables_form, exc)
        else:
            if not _partial(request):
                return redirect("playground_run_detail", pk=run.pk)
            run = selectors.playground_run_list_for(user=user).get(pk=run.pk)
    context = _workspace_context(request, form, variables_form, run)
    if _partial(request):
        return render(request, "playground/partials/workspace.html", context)
    context["page"] = _recent_runs(request)
    return render(request, "playground/playground.html", context)


@login_required
@require_GET
def playground_run_detail(request, pk):
    """A run: with htmx the result panel (polling until done), else its own page."""
    run = get_object_or_404(selectors.playground_run_list_for(user=request.user), pk=pk)
    if _partial(request):
        response = render(request, "playground/partials/run_result.html", {"run": run})
        if run.done:
            response["HX-Trigger"] = RUN_DONE_EVENT
    else:
        response = render(
            request,
            "playground/run_detail.html",
            {"run": run, "can_run": may_run(request.user, run.team)},
        )
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- batches -----------------------------------------------------------------------------------


@login_required
@require_GET
def batch_list(request):
    user = request.user
    batches = selectors.batch_run_list_for(user=user).order_by("-created_at", "pk")
    state = request.GET.get("state", "")
    if state in BatchState.values:
        batches = batches.filter(state=state)
    else:
        state = ""
    mine = request.GET.get("mine") == "1"
    if mine:
        batches = batches.filter(created_by=user)
    page = Paginator(batches, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "state": state,
        "mine": mine,
        "states": BatchState.values,
        "can_run": may_run_anywhere(user),
    }
    template = (
        "playground/partials/batch_table.html"
        if _partial(request)
        else "playground/batch_list.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_http_methods(["GET", "POST"])
def batch_create(request):
    user = request.user
    if not may_run_anywhere(user):
        raise PermissionDenied(AUDITOR_NOTE)
    querysets = _target_querysets(user, for_batch=True)
    data = request.POST if request.method == "POST" else None
    initial = {}
    for name in ("release", "prompt_version", "model_version", "dataset_version"):
        if request.GET.get(name):
            initial[name] = _uuid_or_404(request.GET[name])
    form = TargetForm(data, initial=initial, **querysets)
    batch_form = BatchForm(
        data,
        initial=initial,
        dataset_versions=dataset_version_list_for(user=user).order_by("dataset__slug", "-version"),
    )
    if data is None:
        source = _schema_source(user, request.GET.get("release"), request.GET.get("prompt_version"))
    else:
        source = _picked_prompt(user, form, data)
    variables_form = _variables_form(source, data, for_batch=True)
    variables_ok = variables_form is None or variables_form.is_valid()
    if data is not None and form.is_valid() and batch_form.is_valid() and variables_ok:
        try:
            batch = services.batch_run_create(
                actor=user,
                **form.target(),
                dataset_version=batch_form.cleaned_data["dataset_version"],
                concurrency=batch_form.cleaned_data["concurrency"],
                variables=variables_form.variables() if variables_form else {},
            )
        except ApplicationError as exc:
            refuse_or_404(exc)
            _place_error(form, variables_form, exc)
            for key, errors in exc.extra.items():
                if key in batch_form.fields:
                    for error in errors:
                        batch_form.add_error(key, str(error))
        else:
            messages.success(
                request,
                f"Batch queued: {batch.total} row{'s' if batch.total != 1 else ''}, "
                f"{batch.concurrency} at a time.",
            )
            return redirect("batch_detail", pk=batch.pk)
    return render(
        request,
        "playground/batch_form.html",
        {
            "form": form,
            "batch_form": batch_form,
            "variables_form": variables_form,
            "max_rows": f"{services.max_rows():,}",
        },
    )


def _batch_or_404(request, pk):
    return get_object_or_404(selectors.batch_run_list_for(user=request.user), pk=pk)


def _live_context(request, batch) -> dict:
    state = request.GET.get("state", "")
    if state not in ItemState.values:
        state = ""
    items = selectors.batch_item_list(batch=batch, state=state or None)
    page = Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))
    return {
        "batch": batch,
        "page": page,
        "item_state": state,
        "item_states": ItemState.values,
        "can_cancel": batch.active and may_cancel(request.user, batch),
        "not_run": batch.total - batch.done_count,
    }


@login_required
@require_GET
def batch_detail(request, pk):
    """A batch: progress and rows; with htmx (``part=live``) only the live region, which the
    page polls every second while the batch is active."""
    batch = _batch_or_404(request, pk)
    context = _live_context(request, batch)
    if _partial(request) and (
        request.GET.get("part") == "live" or request.htmx.target == "batch-live"
    ):
        template = "playground/partials/batch_live.html"
    else:
        template = "playground/batch_detail.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def batch_cancel(request, pk):
    batch = _batch_or_404(request, pk)
    try:
        batch = services.batch_run_cancel(actor=request.user, batch=batch)
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Batch cancelled: {batch.total - batch.done_count} row(s) will not be run.",
        )
    return redirect("batch_detail", pk=pk)


@login_required
@require_GET
def batch_results(request, pk):
    return results_response(_batch_or_404(request, pk))

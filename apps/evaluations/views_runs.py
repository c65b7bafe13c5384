"""The evaluation-run pages: the list, the new-run form, and a run's page.

A run's page shows what it ran with, a live region polled every second while the run is queued
or running (``<progress>``, completed/total, passed, failed, errored, the cancel button), and,
once it has results, its figures (pass rate, pass rate per assertion type, latency p50/p95,
tokens, cost, the fairness gaps of case groups) and the results, paginated and filterable by
outcome. The polling stops by itself: a finished run's live region carries no trigger.

Reads go through ``evaluations.runs`` selectors (out of scope is a 404), every write through one
service; a service's refusal becomes a form error or a message, never a 500.
"""

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.catalog.selectors import model_version_list_for, prompt_version_list_for
from apps.core.exceptions import ApplicationError
from apps.core.pages import refuse_or_404
from apps.releases.selectors import release_list_for

from . import runs, selectors
from .forms_runs import EvalRunForm
from .models import ResultOutcome, RunState

PAGE_SIZE = 25
RESULTS_PAGE_SIZE = 25
LIVE_TARGET = "run-live"
STARTER_NOTE = (
    "You can read evaluation runs but not start them: a run calls a model and costs money, so it "
    "takes a product manager, reviewer or admin role in the team that owns the release."
)


def _partial(request) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _uuid_or_none(value) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


# --- the list ----------------------------------------------------------------------------------


@login_required
@require_GET
def eval_run_list(request):
    user = request.user
    qs = runs.run_list_for(user=user)
    state = request.GET.get("state", "")
    if state in RunState.values:
        qs = qs.filter(state=state)
    else:
        state = ""
    suite = _uuid_or_none(request.GET.get("suite", ""))
    if suite:
        qs = qs.filter(suite_version__suite_id=suite)
    release = _uuid_or_none(request.GET.get("release", ""))
    if release:
        qs = qs.filter(release_id=release)
    mine = request.GET.get("mine") == "1"
    if mine:
        qs = qs.filter(created_by=user)
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "state": state,
        "states": RunState.values,
        "suite": suite,
        "release": release,
        "mine": mine,
        "can_start": runs.may_start_anywhere(user),
    }
    template = (
        "evaluations/partials/run_table.html" if _partial(request) else "evaluations/run_list.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- a new run ---------------------------------------------------------------------------------


def _form(user, data=None, initial=None) -> EvalRunForm:
    return EvalRunForm(
        data,
        initial=initial or {},
        suites=selectors.suite_list_for(user).filter(latest_version__isnull=False),
        suite_versions=selectors.suite_version_list_for(user)
        .filter(deprecated_at__isnull=True)
        .order_by("suite__slug", "-version"),
        releases=release_list_for(user=user)
        .prefetch_related(None)
        .order_by("product__slug", "-created_at"),
        prompt_versions=prompt_version_list_for(user=user).order_by("prompt__slug", "-version"),
        model_versions=model_version_list_for(user=user)
        .prefetch_related(None)
        .order_by("model__slug", "-version"),
    )


@login_required
@require_http_methods(["GET", "POST"])
def eval_run_create(request):
    user = request.user
    if not runs.may_start_anywhere(user):
        raise PermissionDenied(STARTER_NOTE)
    initial = {}
    for name in ("suite", "suite_version", "release", "prompt_version", "model_version"):
        value = _uuid_or_none(request.GET.get(name, ""))
        if value:
            initial[name] = value
    data = request.POST if request.method == "POST" else None
    form = _form(user, data, initial)
    if data is not None and form.is_valid():
        try:
            run = runs.eval_run_create(actor=user, **form.run_arguments())
        except ApplicationError as exc:
            refuse_or_404(exc)
            for key, errors in exc.extra.items():
                if key in form.fields:
                    for error in errors if isinstance(errors, list) else [errors]:
                        form.add_error(key, str(error))
            form.add_error(None, exc.message)
        else:
            messages.success(
                request,
                f"Run queued: {run.total} case{'s' if run.total != 1 else ''} of "
                f"{run.suite_version}, {run.concurrency} at a time.",
            )
            return redirect("eval_run_detail", pk=run.pk)
    return render(request, "evaluations/run_form.html", {"form": form})


# --- a run -------------------------------------------------------------------------------------


def _run_or_404(request, pk):
    return get_object_or_404(runs.run_list_for(user=request.user), pk=pk)


def _percent(rate) -> int | None:
    return None if rate is None else round(100 * rate)


def figures(run) -> dict:
    """What the page shows of ``run.aggregates`` (empty until the run has results)."""
    agg = run.aggregates or {}
    counts = agg.get("assertion_counts") or {}
    per_assertion = [
        {
            "type": kind,
            "rate": rate,
            "percent": _percent(rate),
            "passed": (counts.get(kind) or {}).get("passed"),
            "total": (counts.get(kind) or {}).get("total"),
        }
        for kind, rate in (agg.get("per_assertion") or {}).items()
    ]
    groups = []
    for name, group in (agg.get("groups") or {}).items():
        values = [
            {
                "value": value,
                "rate": rate,
                "percent": _percent(rate),
                "count": (group.get("counts") or {}).get(value),
            }
            for value, rate in (group.get("values") or {}).items()
        ]
        groups.append(
            {
                "name": name,
                "vary": group.get("vary", ""),
                "gap": group.get("gap", 0),
                "gap_points": round(100 * (group.get("gap") or 0)),
                "values": values,
            }
        )
    groups.sort(key=lambda g: -g["gap"])
    rate = (
        run.pass_rate
        if run.is_finished
        else (run.passed / run.completed if run.completed else None)
    )
    return {
        "has": bool(agg),
        "pass_rate": rate,
        "pass_percent": _percent(rate),
        "so_far": not run.is_finished,
        "per_assertion": per_assertion,
        "latency": agg.get("latency_ms") or {},
        "tokens": agg.get("tokens") or {},
        "cost": agg.get("cost"),
        "groups": groups,
        "duration": agg.get("duration_seconds"),
    }


def _live_context(request, run) -> dict:
    outcome = request.GET.get("outcome", "")
    if outcome not in ResultOutcome.values:
        outcome = ""
    results = runs.result_list(run=run, outcome=outcome or None)
    page = Paginator(results, RESULTS_PAGE_SIZE).get_page(request.GET.get("page"))
    return {
        "run": run,
        "page": page,
        "outcome": outcome,
        "outcomes": ResultOutcome.values,
        "figures": figures(run),
        "can_cancel": run.is_active and runs.may_cancel(request.user, run),
        "not_run": max(0, run.total - run.completed),
        "live_target": LIVE_TARGET,
    }


@login_required
@require_GET
def eval_run_detail(request, pk):
    """A run; with htmx (``part=live``, or aimed at the live region) only the live region,
    which the page polls every second while the run is queued or running."""
    run = _run_or_404(request, pk)
    context = _live_context(request, run)
    if _partial(request) and (
        request.GET.get("part") == "live" or request.htmx.target == LIVE_TARGET
    ):
        template = "evaluations/partials/run_live.html"
    else:
        template = "evaluations/run_detail.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_POST
def eval_run_cancel(request, pk):
    run = _run_or_404(request, pk)
    try:
        run = runs.eval_run_cancel(actor=request.user, run=run)
    except ApplicationError as exc:
        refuse_or_404(exc)
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Run cancelled: {run.total - run.completed} case(s) will not be run; calls already "
            "in flight finish and are recorded.",
        )
    return redirect("eval_run_detail", pk=pk)

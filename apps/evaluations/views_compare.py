"""The comparison page: two runs side by side (``/evaluations/compare/?a=<run>&b=<run>``).

Both runs must be in the user's scope (else a 404) and of one suite (two versions of it compare
by case key). The page shows both runs with their progress, the metric deltas, the counts per
kind of change, and the cases side by side with both outputs, filterable by change
(``?change=regressed``) and paginated. While a run is going the live region polls (htmx).
"""

import uuid

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from .comparison import CHANGE_KINDS, attach_outputs, compare_runs
from .models import CrRole, EvalRun

PAGE_SIZE = 50
LIVE_TARGET = "compare-live"


def _partial(request: HttpRequest) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def _run_or_404(request: HttpRequest, value) -> EvalRun:
    from .runs import run_list_for

    try:
        pk = uuid.UUID(str(value))
    except ValueError:
        raise Http404("Not a valid run id.") from None
    run = (
        run_list_for(user=request.user)
        .select_related("suite_version", "suite_version__suite", "release", "change_request")
        .filter(pk=pk)
        .first()
    )
    if run is None:
        raise Http404("No such run, or it is outside what you may see.")
    return run


def side_labels(a: EvalRun, b: EvalRun) -> tuple[str, str]:
    """ "Baseline"/"Proposed" for a change request's pair of runs, else "A"/"B"."""
    if a.cr_role == CrRole.BASELINE and b.cr_role == CrRole.PROPOSED:
        return "Baseline", "Proposed"
    return "A", "B"


@login_required
@require_GET
def eval_compare(request: HttpRequest):
    a_id, b_id = request.GET.get("a", ""), request.GET.get("b", "")
    if not a_id or not b_id:
        response = render(
            request,
            "evaluations/compare.html",
            {"problem": "Pick two runs to compare: ?a=<run id>&b=<run id>."},
            status=400,
        )
        return response
    a, b = _run_or_404(request, a_id), _run_or_404(request, b_id)
    a_label, b_label = side_labels(a, b)
    context = {"a": a, "b": b, "a_label": a_label, "b_label": b_label}
    if a.suite_version.suite_id != b.suite_version.suite_id:
        context["problem"] = (
            f"These runs are of different suites ({a.suite_version.suite.slug} and "
            f"{b.suite_version.suite.slug}); only runs of one suite compare case by case."
        )
        return render(request, "evaluations/compare.html", context, status=400)
    comparison = compare_runs(a, b)
    change = request.GET.get("change", "")
    if change not in CHANGE_KINDS:
        change = ""
    rows = comparison.of(change) if change else comparison.rows
    page = Paginator(rows, PAGE_SIZE).get_page(request.GET.get("page"))
    attach_outputs(list(page.object_list))
    context |= {
        "comparison": comparison,
        "page": page,
        "rows": page.object_list,
        "change": change,
        "changes": [(kind, comparison.counts[kind]) for kind in CHANGE_KINDS],
        "live": not comparison.finished,
        "change_request": a.change_request if a.change_request_id == b.change_request_id else None,
        "empty_note": f"No {change} cases." if change else "No cases.",
    }
    template = (
        "evaluations/partials/compare_live.html"
        if _partial(request) and request.htmx.target == LIVE_TARGET
        else "evaluations/compare.html"
    )
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response

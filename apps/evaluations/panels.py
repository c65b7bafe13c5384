"""The evaluation gate's section of the change-request page (registered with
``apps.changes.gates`` in ``EvaluationsConfig.ready``).

It shows the gate's checklist, both runs with their progress, the metric deltas and the cases
side by side, what got worse first (at most ``PANEL_ROWS``; the comparison page has them all).
The change-request page polls it while the gate is pending.
"""

from django.urls import reverse

from .comparison import attach_outputs

PANEL_ROWS = 20


def compare_url(a, b) -> str:
    return f"{reverse('eval_compare')}?a={a.pk}&b={b.pk}"


def gate_panel(*, request, cr, verdict) -> dict | None:
    status = verdict.detail
    if status is None or not status.required:
        return None
    comparison = status.comparison
    rows, more = [], 0
    if comparison is not None:
        ordered = comparison.by_change()
        rows = attach_outputs(ordered[:PANEL_ROWS])
        more = max(0, len(ordered) - PANEL_ROWS)
    return {
        "order": 10,
        "name": verdict.name,
        "template": "evaluations/partials/gate_panel.html",
        "gate": status,
        "verdict": verdict,
        "comparison": comparison,
        "rows": rows,
        "more_rows": more,
        "compare_url": compare_url(status.baseline_run, status.proposed_run)
        if comparison is not None
        else "",
        "live": status.pending,
    }

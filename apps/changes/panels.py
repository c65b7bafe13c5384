"""The change-requests section of the product page, and the registry of the sections upper apps
add to the change request page."""

from collections.abc import Callable
from typing import Any

from apps.catalog.panels import register_product_panel

from .selectors import change_request_list_for

ROWS = 10


@register_product_panel
def change_requests_panel(request, product, can_change: bool) -> dict:
    rows = list(
        change_request_list_for(user=request.user)
        .filter(product=product)
        .prefetch_related(None)
        .order_by("-created_at")[: ROWS + 1]
    )
    return {
        "order": 20,
        "template": "changes/partials/product_panel.html",
        "change_requests": rows[:ROWS],
        "more_change_requests": len(rows) > ROWS,
    }


# --- sections that upper apps add to the change request page ----------------------------------
#
# Like the product page's registry (``apps.catalog.panels``): an upper app (the portal's impact
# section, for one) registers ``(request, cr, can_change) -> dict | None``; the dict names a
# ``template`` and carries its context and an ``order``. The change request page renders each
# returned panel in order, without this app importing the upper ones.

ChangePanel = Callable[..., dict[str, Any] | None]
_change_panels: list[ChangePanel] = []


def register_change_panel(panel: ChangePanel) -> ChangePanel:
    if panel not in _change_panels:
        _change_panels.append(panel)
    return panel


def change_panels(*, request, cr, can_change: bool) -> list[dict[str, Any]]:
    shown = [p for panel in _change_panels if (p := panel(request, cr, can_change))]
    return sorted(shown, key=lambda p: p.get("order", 100))

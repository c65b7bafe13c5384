"""The change-requests section of the product page."""

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

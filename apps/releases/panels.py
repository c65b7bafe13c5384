"""The releases section of the product page."""

from apps.catalog.panels import register_product_panel

from .selectors import release_list_for

ROWS = 10


@register_product_panel
def releases_panel(request, product, can_change: bool) -> dict:
    scoped = release_list_for(user=request.user).filter(product=product).prefetch_related(None)
    releases = list(scoped.order_by("-created_at")[: ROWS + 1])
    released = scoped.filter(status="released").first()
    return {
        "order": 10,
        "template": "releases/partials/product_panel.html",
        "released": released,
        "releases": releases[:ROWS],
        "more_releases": len(releases) > ROWS,
    }

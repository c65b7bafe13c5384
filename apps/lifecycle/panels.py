"""The product page's lifecycle section (see ``views.lifecycle_context``)."""

from apps.catalog.panels import register_product_panel


@register_product_panel
def lifecycle_panel(request, product, can_change):
    from .views import lifecycle_context

    return {
        "template": "lifecycle/partials/product_panel.html",
        "order": 5,
        **lifecycle_context(request, product),
    }

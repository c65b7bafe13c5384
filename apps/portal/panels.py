"""The portal's sections on pages of lower apps: the product page's "Published APIs" (status
and subscribers of each API of the product) and the change request page's impact ("Affects N
published APIs and M active subscriptions").

Registered when this module is imported: by ``apps/portal/urls.py`` (so at URL loading), and by
``PortalConfig.ready`` once it imports it; registering twice is a no-op.
"""

from django.db.models import Count, Q

from apps.catalog.panels import register_product_panel
from apps.changes.panels import register_change_panel

from .models import SubscriptionState
from .selectors import api_list_for, can_change_product, change_impact


@register_product_panel
def published_apis_panel(request, product, can_change: bool) -> dict:
    """One query: the product's APIs the user may see, with their subscriber counts."""
    apis = list(
        api_list_for(user=request.user)
        .filter(product=product)
        .annotate(
            active_count=Count(
                "subscriptions", filter=Q(subscriptions__state=SubscriptionState.ACTIVE)
            ),
            pending_count=Count(
                "subscriptions", filter=Q(subscriptions__state=SubscriptionState.PENDING)
            ),
        )
        .order_by("slug")
    )
    return {
        "order": 35,
        "template": "portal/partials/product_panel.html",
        "apis": apis,
        "can_publish": can_change,
    }


@register_change_panel
def impact_panel(request, cr, can_change: bool) -> dict:
    """The live APIs that follow the product's current release, so the change reaches them."""
    impact = change_impact(product=cr.product)
    return {
        "order": 10,
        "template": "portal/partials/change_impact.html",
        "impact": impact,
        "can_manage": can_change or can_change_product(request.user, cr.product),
    }

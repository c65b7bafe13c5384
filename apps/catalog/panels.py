"""Sections that upper apps add to the product page, without the catalog importing them.

An app registers a function ``(request, product, can_change) -> dict | None`` in its
``AppConfig.ready``; the dict names a ``template`` and carries that template's context, and an
``order``. The product page renders each returned panel in order.
"""

from collections.abc import Callable
from typing import Any

ProductPanel = Callable[..., dict[str, Any] | None]
_panels: list[ProductPanel] = []


def register_product_panel(panel: ProductPanel) -> ProductPanel:
    if panel not in _panels:
        _panels.append(panel)
    return panel


def product_panels(*, request, product, can_change: bool) -> list[dict[str, Any]]:
    shown = [p for panel in _panels if (p := panel(request, product, can_change))]
    return sorted(shown, key=lambda p: p.get("order", 100))

"""The navigation's count of subscription requests the signed-in user may decide.

The count is not read while the page renders: for a user who may decide something (a product
manager or admin of a team, a superuser: known from the roles the navigation reads anyway) the
layout draws an empty badge that htmx fills on load from ``portal_nav_count`` (one COUNT query
there). So no page pays a query for it, and nobody else ever does.
"""

from django.http import HttpRequest

from .selectors import approver_team_ids


def may_decide(user) -> bool:
    return bool(user.is_superuser or approver_team_ids(user))


def portal_queue(request: HttpRequest) -> dict:
    """``nav_portal_decides``: evaluated only when a template shows it, from the cached roles."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"nav_portal_decides": lambda: may_decide(user)}

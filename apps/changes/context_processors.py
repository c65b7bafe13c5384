"""The navigation's count of change requests waiting for the signed-in user's review."""

from django.http import HttpRequest

from .models import ChangeRequest
from .selectors import change_request_queue_for


def waiting_for(request: HttpRequest) -> list[ChangeRequest]:
    """The user's review queue, read once per request (the queue page and the nav share it)."""
    queue = getattr(request, "_changes_waiting", None)
    if queue is None:
        queue = change_request_queue_for(user=request.user)
        request._changes_waiting = queue
    return queue


def review_queue(request: HttpRequest) -> dict:
    """``nav_queue_count``: evaluated only when a template shows it (htmx fragments do not), in
    the selector's fixed number of queries, and only for signed-in users."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    return {"nav_queue_count": lambda: len(waiting_for(request))}

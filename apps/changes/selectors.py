"""Reads of change requests: scoped lists and the reviewer's queue."""

from django.db.models import Prefetch, QuerySet

from apps.accounts.models import User
from apps.catalog.selectors import product_list_for

from .models import REVIEW_STATES, Approval, ChangeRequest
from .services import DEFAULT_POLICY


def change_request_list_for(*, user: User) -> QuerySet[ChangeRequest]:
    qs = ChangeRequest.objects.select_related(
        "product",
        "product__owner_team",
        "baseline",
        "proposed",
        "requested_by",
        "implemented_by",
    ).prefetch_related(Prefetch("approvals", queryset=Approval.objects.select_related("reviewer")))
    if user.is_superuser or user.has_perm("catalog.view_product"):
        return qs
    return qs.filter(product__in=product_list_for(user=user).values("pk"))


def change_request_queue_for(*, user: User) -> list[ChangeRequest]:
    """Change requests in review that wait for ``user``'s signature: the user holds a required
    role (or is an invited reviewer), is not conflicted, and has not signed this content yet."""
    candidates = change_request_list_for(user=user).filter(state__in=REVIEW_STATES)
    candidates = candidates.exclude(requested_by=user).order_by("submitted_at")
    team_roles = user.team_roles()
    waiting = []
    for cr in candidates:
        policy = cr.policy_snapshot or DEFAULT_POLICY
        required = {rule["role"] for rule in policy["required_roles"]}
        invited = user.get_username() in policy["optional_reviewers"]
        if not (team_roles.get(cr.product.owner_team_id, set()) & required or invited):
            continue
        if str(user.pk) in cr.conflicted_user_ids:
            continue
        signed = any(
            a.reviewer_id == user.pk and a.fingerprint == cr.fingerprint and a.decision != "comment"
            for a in cr.approvals.all()
        )
        if not signed:
            waiting.append(cr)
    return waiting

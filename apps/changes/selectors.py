"""Reads of change requests: scoped lists and the reviewer's queue."""

from django.db.models import Exists, OuterRef, Prefetch, QuerySet

from apps.accounts.models import User
from apps.catalog.selectors import product_list_for

from .models import REVIEW_STATES, Approval, ApprovalPolicy, ChangeRequest
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


def _queue_candidates(user: User) -> QuerySet[ChangeRequest]:
    """In review, not requested by ``user``, and not yet signed by them for this content."""
    signed = Approval.objects.filter(
        change_request=OuterRef("pk"), reviewer=user, fingerprint=OuterRef("fingerprint")
    ).exclude(decision="comment")
    return (
        change_request_list_for(user=user)
        .filter(state__in=REVIEW_STATES)
        .exclude(requested_by=user)
        .exclude(Exists(signed))
    )


def _waits_for(user: User, team_roles: dict, team_id, policy: dict | None, conflicted) -> bool:
    """The user holds a required role in the product's team (or is invited), and is not
    conflicted (requester or author of the proposed content)."""
    policy = policy or DEFAULT_POLICY
    required = {rule["role"] for rule in policy["required_roles"]}
    invited = user.get_username() in policy["optional_reviewers"]
    eligible = bool(team_roles.get(team_id, set()) & required) or invited
    return eligible and str(user.pk) not in (conflicted or [])


def change_request_queue_for(*, user: User) -> list[ChangeRequest]:
    """Change requests in review that wait for ``user``'s signature, oldest first.

    The signature check is an EXISTS in SQL; the policy check runs on the fetched rows."""
    team_roles = user.team_roles()
    return [
        cr
        for cr in _queue_candidates(user).order_by("submitted_at")
        if _waits_for(
            user, team_roles, cr.product.owner_team_id, cr.policy_snapshot, cr.conflicted_user_ids
        )
    ]


def approval_policy_list_for(*, user: User) -> QuerySet[ApprovalPolicy]:
    """The policies of the products ``user`` may see."""
    qs = ApprovalPolicy.objects.select_related("product")
    if user.is_superuser or user.has_perm("catalog.view_product"):
        return qs
    return qs.filter(product__in=product_list_for(user=user).values("pk"))

"""Reads of accounts with rules: which teams and tokens a user may see."""

from django.db.models import QuerySet

from .models import PersonalAccessToken, Team, User
from .roles import AUDITOR, AUTHOR_ROLES


def team_list_for(*, user: User) -> QuerySet[Team]:
    """The user's teams; every team for superusers and auditors."""
    if user.is_superuser or user.has_role(AUDITOR):
        return Team.objects.all()
    return Team.objects.filter(pk__in=user.team_ids())


def author_team_list_for(*, user: User) -> QuerySet[Team]:
    """The teams whose products and artifacts ``user`` may create (product manager or admin)."""
    if user.is_superuser:
        return Team.objects.order_by("slug")
    return (
        Team.objects.filter(memberships__user=user, memberships__role__in=AUTHOR_ROLES)
        .distinct()
        .order_by("slug")
    )


def token_list_for(*, user: User) -> QuerySet[PersonalAccessToken]:
    """A user's own personal access tokens, newest first."""
    return PersonalAccessToken.objects.filter(user=user).order_by("-created_at")

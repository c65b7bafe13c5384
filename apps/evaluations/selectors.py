"""Reads of evaluation suites and their versions, scoped to the teams a user belongs to.

A suite belongs to its owner team: the team's members see it, whatever their role; auditors and
superusers see every suite (auditors hold the model-level view permission on products, as in
``catalog.selectors``). Anything else is out of scope: a 404. Product managers and admins of the
owner team (and superusers) change a suite: its name, description, new versions, deprecations.
"""

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from apps.accounts.models import Team, User
from apps.accounts.roles import AUTHOR_ROLES

from .models import EvalCase, EvalSuite, EvalSuiteVersion


def _sees_all(user: User) -> bool:
    return user.is_superuser or user.has_perm("catalog.view_product")


def can_view_suite(user: User, suite: EvalSuite) -> bool:
    return _sees_all(user) or suite.owner_team_id in user.team_ids()


def can_change_suite(user: User, suite: EvalSuite) -> bool:
    """Product managers and admins of the suite's team, and superusers."""
    if user.is_superuser:
        return True
    return bool(AUTHOR_ROLES & user.team_roles().get(suite.owner_team_id, set()))


def can_author_for(user: User, team: Team) -> bool:
    """Whether ``user`` may create suites for ``team``."""
    return user.is_superuser or user.has_role(*AUTHOR_ROLES, team=team)


def can_author_suites(user: User) -> bool:
    """Whether ``user`` may create suites for some team."""
    return user.is_superuser or user.has_role(*AUTHOR_ROLES)


def suite_list_for(user: User) -> QuerySet[EvalSuite]:
    """The suites ``user`` may see, with their version count and latest version (number and id).

    The figures are correlated subqueries, not a join with GROUP BY, as in
    ``catalog.selectors.artifact_list_for``."""
    versions = EvalSuiteVersion.objects.filter(suite=OuterRef("pk")).order_by()
    latest = versions.order_by("-version")
    qs = (
        EvalSuite.objects.select_related("owner_team", "created_by")
        .annotate(
            version_count=Coalesce(
                Subquery(versions.values("suite").annotate(n=Count("pk")).values("n")[:1]),
                0,
                output_field=IntegerField(),
            ),
            latest_version=Subquery(latest.values("version")[:1]),
            latest_version_pk=Subquery(latest.values("pk")[:1]),
        )
        .order_by("slug", "pk")
    )
    if _sees_all(user):
        return qs
    return qs.filter(owner_team_id__in=user.team_ids())


def suite_version_list_for(user: User) -> QuerySet[EvalSuiteVersion]:
    """The suite versions ``user`` may see, newest first, with their number of cases."""
    cases = (
        EvalCase.objects.filter(suite_version=OuterRef("pk"))
        .order_by()
        .values("suite_version")
        .annotate(n=Count("pk"))
        .values("n")[:1]
    )
    qs = (
        EvalSuiteVersion.objects.select_related(
            "suite",
            "suite__owner_team",
            "created_by",
            "deprecated_by",
            "source_dataset_version",
            "source_dataset_version__dataset",
        )
        .annotate(case_count=Coalesce(Subquery(cases), 0, output_field=IntegerField()))
        .order_by("-created_at", "-version")
    )
    if _sees_all(user):
        return qs
    return qs.filter(suite__owner_team_id__in=user.team_ids())


def suite_latest_version(suite: EvalSuite) -> EvalSuiteVersion | None:
    """The suite's newest version (deprecated or not), or None before its first."""
    return (
        EvalSuiteVersion.objects.select_related("source_dataset_version")
        .filter(suite=suite)
        .order_by("-version")
        .first()
    )


def suite_case_list(version: EvalSuiteVersion) -> QuerySet[EvalCase]:
    """The cases of a version already found in scope, in order."""
    return EvalCase.objects.filter(suite_version=version).order_by("position")

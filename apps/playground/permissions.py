"""Who may start and cancel runs. A run costs money, so reading is not enough.

Members of the team that owns the target (the release's product, or the prompt) may run it in
the playground or over a dataset, whatever their role but auditor: product managers and admins
author the product, reviewers try what they review, developers try what they will call.
Auditors read every run and never start one. A batch is cancelled by whoever started it, or by a
product manager or admin of its team.
"""

from apps.accounts.models import Team, User
from apps.accounts.roles import ADMIN, AUTHOR_ROLES, DEVELOPER, PRODUCT_MANAGER, REVIEWER

RUN_ROLES = frozenset({PRODUCT_MANAGER, REVIEWER, DEVELOPER, ADMIN})
CANCEL_ROLES = AUTHOR_ROLES


def may_run(user: User, team: Team | None) -> bool:
    if user.is_superuser:
        return True
    return team is not None and user.has_role(*RUN_ROLES, team=team)


def may_run_anywhere(user: User) -> bool:
    return user.is_superuser or user.has_role(*RUN_ROLES)


def may_cancel(user: User, batch) -> bool:
    if user.is_superuser or (batch.created_by_id is not None and batch.created_by_id == user.pk):
        return True
    return user.has_role(*CANCEL_ROLES, team=batch.team)

"""Roles decide the verbs; teams decide the objects.

Each (team, role) pair is a Django group ``team:<slug>:<role>``. When a team's product or
artifact is created, each of the team's role groups is granted the object verbs of its role on
it (django-guardian). Auditors are also in the global ``auditors`` group, which holds the
model-level ``view`` permissions: they read everything and write nothing.
"""

PRODUCT_MANAGER = "product_manager"
REVIEWER = "reviewer"
DEVELOPER = "developer"
AUDITOR = "auditor"
ADMIN = "admin"

ROLE_CHOICES = [
    (PRODUCT_MANAGER, "Product manager"),
    (REVIEWER, "Reviewer"),
    (DEVELOPER, "Developer"),
    (AUDITOR, "Auditor"),
    (ADMIN, "Admin"),
]
ROLES = [value for value, _ in ROLE_CHOICES]

# Object verbs each role holds on its team's governed objects.
ROLE_OBJECT_VERBS: dict[str, tuple[str, ...]] = {
    PRODUCT_MANAGER: ("view", "change"),
    REVIEWER: ("view",),
    DEVELOPER: ("view",),
    AUDITOR: ("view",),
    ADMIN: ("view", "change", "delete"),
}

# Roles that may create products and artifacts for their team.
AUTHOR_ROLES = frozenset({PRODUCT_MANAGER, ADMIN})

AUDITORS_GROUP = "auditors"


def group_name(team_slug: str, role: str) -> str:
    return f"team:{team_slug}:{role}"

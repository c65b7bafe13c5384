"""Read-only roles, enforced once for every page.

A user whose only role is a read-only one (auditors) may sign in and out, change their own
password, manage their own personal tokens and start a verification of the audit chain; any
other write to a page (POST, PUT, PATCH, DELETE) is a 403 before the view runs, whatever the
view itself checks. The REST API authenticates inside DRF (tokens), after middleware; there the
permission classes of each resource refuse the same writes (tests/e2e/test_auditor_journey.py
tries every write operation of the OpenAPI schema).
"""

from django.core.exceptions import PermissionDenied

from .roles import AUDITOR

READ_ONLY_ROLES = frozenset({AUDITOR})
# URL names a read-only user may POST to: their own session, password and tokens, and the
# verification of the audit chain (a read that records that it was made).
READ_ONLY_MAY_POST = frozenset(
    {"login", "logout", "password_change", "token_list", "token_revoke", "audit_verify_start"}
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def is_read_only(user) -> bool:
    if not user.is_authenticated or user.is_superuser:
        return False
    roles = user.roles()
    return bool(roles) and roles <= READ_ONLY_ROLES


class ReadOnlyRoleMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        if request.method in SAFE_METHODS or request.path_info.startswith("/api/"):
            return None
        match = request.resolver_match
        if match is not None and match.url_name in READ_ONLY_MAY_POST:
            return None
        if is_read_only(request.user):
            raise PermissionDenied("Your role reads only: auditors change nothing.")
        return None

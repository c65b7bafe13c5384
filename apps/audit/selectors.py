"""Reads of the audit trail.

Who reads the trail (``/audit/``, ``/api/v1/audit-events/``, ``/api/v1/history/``):

- auditors and superusers read every event and the history of every object;
- product managers and admins of a team read the events filed under the products their teams
  own, and the events of their own actions; the history of an object, when at least one event
  about it is filed under one of those products (a product itself, its releases, changes...);
- everybody else (reviewers, developers) may not browse the trail: a 403.

Pages are keyset-paginated on ``seq`` (newest first): a page is one index range scan, however
deep it is and however many events match, and no page ever counts the matching events.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.apps import apps
from django.core.exceptions import PermissionDenied
from django.db.models import Model, Q, QuerySet

from .models import AuditEvent

AUDITOR = "auditor"  # apps.accounts.roles: the names, without importing the floor above
TEAM_READERS = frozenset({"product_manager", "admin"})


def recent_activity_for(*, user, product_ids: QuerySet, limit: int = 15) -> list[AuditEvent]:
    """The newest events about the products ``user`` sees, or done by ``user`` (no logins)."""
    return list(
        AuditEvent.objects.filter(Q(product_id__in=product_ids) | Q(actor_id=user.pk))
        .exclude(verb__startswith="login.")
        .order_by("-seq")[:limit]
    )


# --- scope -------------------------------------------------------------------------------------


def trail_sees_everything(user) -> bool:
    return bool(user.is_superuser or user.has_role(AUDITOR))


def trail_team_ids(user) -> set:
    """The teams in which ``user`` is a product manager or an admin."""
    return {team_id for team_id, roles in user.team_roles().items() if roles & TEAM_READERS}


def trail_may_browse(user) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    return trail_sees_everything(user) or bool(trail_team_ids(user))


def _product_model() -> type[Model]:
    return apps.get_model("catalog", "Product")


def trail_product_ids(user) -> list:
    """Ids of the products whose events ``user`` reads (a short list: their teams' products)."""
    return list(
        _product_model()
        .objects.filter(owner_team_id__in=trail_team_ids(user))
        .values_list("pk", flat=True)
    )


def audit_event_list_for(*, user) -> QuerySet[AuditEvent]:
    """The events ``user`` may read, newest first; PermissionDenied for who may not browse."""
    if not trail_may_browse(user):
        raise PermissionDenied("Only auditors, product managers and admins read the audit trail.")
    qs = AuditEvent.objects.order_by("-seq")
    if trail_sees_everything(user):
        return qs
    return qs.filter(Q(product_id__in=trail_product_ids(user)) | Q(actor_id=user.pk))


def trail_products_for(*, user) -> list[tuple[str, str]]:
    """(id, slug) of the products offered in the trail's product filter."""
    qs = _product_model().objects.order_by("slug")
    if not trail_sees_everything(user):
        qs = qs.filter(owner_team_id__in=trail_team_ids(user))
    return [(str(pk), slug) for pk, slug in qs.values_list("pk", "slug")]


def product_slugs(ids) -> dict:
    """{product id: slug} for the products named on a page (one query)."""
    ids = {pk for pk in ids if pk}
    if not ids:
        return {}
    return dict(_product_model().objects.filter(pk__in=ids).values_list("pk", "slug"))


@cache
def known_object_types() -> list[tuple[str, str]]:
    """(``app_label.model``, verbose name) of the project's models: what events are about."""
    out = []
    for model in apps.get_models():
        if not model.__module__.startswith("apps.") or model.__name__.startswith("Historical"):
            continue
        out.append((model._meta.label_lower, f"{model._meta.verbose_name} ({model._meta.label})"))
    return sorted(out)


def object_in_scope(*, user, object_type: str, object_id: str) -> bool:
    """Whether ``user`` may read the history of that object (see the module's rules)."""
    if trail_sees_everything(user):
        return True
    if not trail_may_browse(user):
        return False
    products = trail_product_ids(user)
    if object_type == "catalog.product" and object_id in {str(pk) for pk in products}:
        return True
    return AuditEvent.objects.filter(
        object_type=object_type, object_id=object_id, product_id__in=products
    ).exists()


def object_events(*, user, object_type: str, object_id: str, limit: int = 500) -> list[AuditEvent]:
    """The events about one object that ``user`` may read, newest first."""
    return list(
        audit_event_list_for(user=user)
        .filter(object_type=object_type, object_id=object_id)
        .order_by("-seq")[:limit]
    )


# --- keyset pages ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeysetPage:
    """One page of events, newest first, and the cursors of its neighbours.

    ``next_before``: the older page is ``?before=<it>``; ``previous_after``: the newer page is
    ``?after=<it>``; None when there is no such page.
    """

    events: list[AuditEvent]
    next_before: int | None
    previous_after: int | None

    @property
    def has_next(self) -> bool:
        return self.next_before is not None

    @property
    def has_previous(self) -> bool:
        return self.previous_after is not None


def keyset_page(
    qs: QuerySet[AuditEvent], *, before: int | None = None, after: int | None = None, size: int = 50
) -> KeysetPage:
    """A page of ``qs`` by ``seq``: older than ``before``, or else newer than ``after``.

    Two queries at most, each a range scan of at most ``size + 1`` rows: the page (one row more
    tells whether the page beyond exists) and, on a page reached by a cursor, whether the page
    on the other side still exists (filters may have changed since the link was made).
    """
    if after is not None and before is None:
        rows = list(qs.filter(seq__gt=after).order_by("seq")[: size + 1])
        newer = len(rows) > size
        rows = rows[:size]
        rows.reverse()
        older = qs.filter(seq__lte=after).exists() if rows else False
    else:
        page_qs = qs.filter(seq__lt=before) if before is not None else qs
        rows = list(page_qs.order_by("-seq")[: size + 1])
        older = len(rows) > size
        rows = rows[:size]
        newer = qs.filter(seq__gte=before).exists() if before is not None and rows else False
    return KeysetPage(
        events=rows,
        next_before=rows[-1].seq if older and rows else None,
        previous_after=rows[0].seq if newer and rows else None,
    )

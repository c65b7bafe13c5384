"""Reads of the audit trail."""

from django.db.models import Q, QuerySet

from .models import AuditEvent


def recent_activity_for(*, user, product_ids: QuerySet, limit: int = 15) -> list[AuditEvent]:
    """The newest events about the products ``user`` sees, or done by ``user`` (no logins)."""
    return list(
        AuditEvent.objects.filter(Q(product_id__in=product_ids) | Q(actor_id=user.pk))
        .exclude(verb__startswith="login.")
        .order_by("-seq")[:limit]
    )

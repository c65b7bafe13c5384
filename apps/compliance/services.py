"""Writes of the compliance app: incidents. Each is one transaction with its audit event.

Verbs: ``incident.filed``, ``incident.updated`` (the fields that changed, old and new),
``incident.status_changed`` (from, to, the note). Who may write: any member of the product's
owner team (product managers, reviewers, developers, admins) but auditors, who only read.
"""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import audit_changes, audit_record
from apps.catalog.models import Product
from apps.catalog.selectors import product_list_for
from apps.core.exceptions import (
    Conflict,
    Forbidden,
    NotFound,
    clean_text,
    invalid,
)
from apps.core.history import as_actor
from apps.core.models import UNSET
from apps.releases.models import Release

from .models import INCIDENT_TRANSITIONS, Incident, IncidentStatus, Severity
from .selectors import can_file_incident

INCIDENT_FIELDS = (
    "title",
    "description",
    "actions_taken",
    "severity",
    "status",
    "occurred_at",
    "resolved_at",
    "release_id",
)
# Severity names people also use; stored as sev1..sev4.
SEVERITY_ALIASES = {"critical": "sev1", "high": "sev2", "medium": "sev3", "low": "sev4"}


def _snapshot(incident: Incident) -> dict[str, Any]:
    return {name: getattr(incident, name) for name in INCIDENT_FIELDS}


def severity_clean(value: Any) -> str:
    text = str(value or "").strip().lower()
    text = SEVERITY_ALIASES.get(text, text)
    if text not in Severity.values:
        raise invalid("severity", "one of sev1, sev2, sev3, sev4 (or critical, high, medium, low).")
    return text


def _require_member(actor: User, product: Product) -> None:
    if not product_list_for(user=actor).filter(pk=product.pk).exists():
        raise NotFound("not_found", "No such product, or it is outside your teams.")
    if not can_file_incident(actor, product):
        raise Forbidden(
            "forbidden",
            "Only members of the product's team (not auditors) file and update incidents.",
        )


def _check_release(product: Product, release: Release | None) -> None:
    if release is not None and release.product_id != product.pk:
        raise invalid("release", "not a release of this product.")


def _check_when(occurred_at: datetime, resolved_at: datetime | None) -> None:
    if occurred_at > timezone.now() + timezone.timedelta(minutes=5):
        raise invalid("occurred_at", "cannot be in the future.")
    if resolved_at is not None and resolved_at < occurred_at:
        raise invalid("resolved_at", "cannot be before the incident occurred.")


def incident_file(
    *,
    actor: User,
    product: Product,
    title: str,
    severity: str = Severity.SEV3,
    description: str = "",
    actions_taken: str = "",
    occurred_at: datetime | None = None,
    release: Release | None = None,
) -> Incident:
    with transaction.atomic():
        _require_member(actor, product)
        _check_release(product, release)
        occurred_at = occurred_at or timezone.now()
        _check_when(occurred_at, None)
        incident = as_actor(
            Incident(
                product=product,
                release=release,
                title=clean_text(title, "title", required=True, limit=200),
                description=clean_text(description, "description"),
                actions_taken=clean_text(actions_taken, "actions_taken"),
                severity=severity_clean(severity),
                occurred_at=occurred_at,
                filed_by=actor,
            ),
            actor,
        )
        incident.save(force_insert=True)
        audit_record(
            actor=actor,
            verb="incident.filed",
            obj=incident,
            product_id=product.pk,
            after={"product": product.slug, **_snapshot(incident)},
        )
    return incident


def _lock(incident: Incident) -> Incident:
    return (
        Incident.objects.select_for_update(of=("self",))
        .select_related("product", "product__owner_team", "release")
        .get(pk=incident.pk)
    )


def incident_update(
    *,
    actor: User,
    incident: Incident,
    title: Any = UNSET,
    description: Any = UNSET,
    actions_taken: Any = UNSET,
    severity: Any = UNSET,
    occurred_at: Any = UNSET,
    resolved_at: Any = UNSET,
    release: Any = UNSET,
) -> Incident:
    """Change an incident's content (not its status: see :func:`incident_transition`)."""
    with transaction.atomic():
        incident = _lock(incident)
        _require_member(actor, incident.product)
        if incident.status == IncidentStatus.CLOSED:
            raise Conflict("closed", "This incident is closed; it can no longer be changed.")
        before = _snapshot(incident)
        if title is not UNSET:
            incident.title = clean_text(title, "title", required=True, limit=200)
        if description is not UNSET:
            incident.description = clean_text(description, "description")
        if actions_taken is not UNSET:
            incident.actions_taken = clean_text(actions_taken, "actions_taken")
        if severity is not UNSET:
            incident.severity = severity_clean(severity)
        if occurred_at is not UNSET:
            if occurred_at is None:
                raise invalid("occurred_at", "This field is required.")
            incident.occurred_at = occurred_at
        if resolved_at is not UNSET:
            incident.resolved_at = resolved_at
        if release is not UNSET:
            _check_release(incident.product, release)
            incident.release = release
        _check_when(incident.occurred_at, incident.resolved_at)
        after = _snapshot(incident)
        if after != before:
            as_actor(incident, actor).save()
            audit_changes(
                actor=actor,
                verb="incident.updated",
                obj=incident,
                before=before,
                after=after,
                product_id=incident.product_id,
            )
    return incident


def incident_transition(
    *, actor: User, incident: Incident, to_status: str, note: str = ""
) -> Incident:
    """Move an incident along ``INCIDENT_TRANSITIONS``; a note is appended to its actions."""
    with transaction.atomic():
        incident = _lock(incident)
        _require_member(actor, incident.product)
        if to_status not in IncidentStatus.values:
            raise invalid("status", f"one of {', '.join(IncidentStatus.values)}.")
        allowed = INCIDENT_TRANSITIONS[incident.status]
        if to_status not in allowed:
            raise Conflict(
                "invalid_transition",
                f"This incident is {incident.status}; it can move to "
                f"{', '.join(allowed) or 'nothing (closed is final)'}, not {to_status}.",
                {"status": [f"Not allowed from {incident.status}."]},
            )
        note = clean_text(note, "note", limit=5000)
        now = timezone.now()
        from_status = incident.status
        incident.status = to_status
        if to_status == IncidentStatus.RESOLVED and incident.resolved_at is None:
            incident.resolved_at = now
        elif to_status == IncidentStatus.OPEN:
            incident.resolved_at = None
        if to_status == IncidentStatus.CLOSED:
            incident.closed_at = now
        if note:
            stamp = f"[{now:%Y-%m-%d %H:%M} {actor.get_username()}, {to_status}] {note}"
            incident.actions_taken = (
                f"{incident.actions_taken}\n{stamp}" if incident.actions_taken else stamp
            )
        as_actor(incident, actor).save()
        audit_record(
            actor=actor,
            verb="incident.status_changed",
            obj=incident,
            product_id=incident.product_id,
            before={"status": from_status},
            after={"status": to_status, **({"note": note} if note else {})},
        )
    return incident

"""Incidents: something went wrong with a product (and maybe one of its releases) in use.

An ``Incident`` is governed like every domain model: history on every change, no bulk writes,
every write through ``compliance.services`` with an audit event. Its status moves by the one
table ``INCIDENT_TRANSITIONS``: open → mitigated → resolved → closed; a mitigated or resolved
incident may be reopened; a closed one is final.
"""

from django.conf import settings
from django.db import models

from apps.core.history import history
from apps.core.models import BaseModel


class Severity(models.TextChoices):
    SEV1 = "sev1", "SEV1 — critical"
    SEV2 = "sev2", "SEV2 — high"
    SEV3 = "sev3", "SEV3 — medium"
    SEV4 = "sev4", "SEV4 — low"


class IncidentStatus(models.TextChoices):
    OPEN = "open", "Open"
    MITIGATED = "mitigated", "Mitigated"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


# The one table of allowed incident moves.
INCIDENT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    IncidentStatus.OPEN: (IncidentStatus.MITIGATED, IncidentStatus.RESOLVED),
    IncidentStatus.MITIGATED: (IncidentStatus.RESOLVED, IncidentStatus.OPEN),
    IncidentStatus.RESOLVED: (IncidentStatus.CLOSED, IncidentStatus.OPEN),
    IncidentStatus.CLOSED: (),
}


class Incident(BaseModel):
    product = models.ForeignKey(
        "catalog.Product", on_delete=models.PROTECT, related_name="incidents"
    )
    release = models.ForeignKey(
        "releases.Release",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="incidents",
    )
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    actions_taken = models.TextField(blank=True)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.SEV3)
    status = models.CharField(
        max_length=16, choices=IncidentStatus.choices, default=IncidentStatus.OPEN
    )
    occurred_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    filed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )

    history = history()

    class Meta:
        ordering = ["-occurred_at", "-created_at"]
        indexes = [
            models.Index(fields=["product", "-occurred_at"], name="incident_product_time"),
            models.Index(fields=["release", "status"], name="incident_release_status"),
            models.Index(fields=["status", "severity"], name="incident_status_severity"),
        ]

    def __str__(self) -> str:
        return f"{self.get_severity_display().split(' ')[0]} {self.title}"

    @property
    def is_active(self) -> bool:
        return self.status in (IncidentStatus.OPEN, IncidentStatus.MITIGATED)

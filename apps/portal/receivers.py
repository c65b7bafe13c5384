"""The portal's handlers of lower apps' domain signals (sent on commit)."""

from django.dispatch import receiver

from apps.changes.models import ChangeRequest
from apps.changes.signals import change_implemented

from . import notifications


@receiver(change_implemented, sender=ChangeRequest, dispatch_uid="portal.change_implemented")
def _tell_subscribers(sender, change: ChangeRequest, **kwargs) -> None:
    """The subscribers of the APIs that follow the product's release hear of the change."""
    notifications.enqueue("change_implemented", change.pk)

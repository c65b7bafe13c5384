"""django-simple-history for every domain model, keeping the actor's username for good."""

from django.db import models
from django.dispatch import receiver
from simple_history.models import HistoricalRecords
from simple_history.signals import pre_create_historical_record


class HistoryActorBase(models.Model):
    history_username = models.CharField(max_length=150, blank=True, db_index=True)

    class Meta:
        abstract = True


def history(**kwargs) -> HistoricalRecords:
    kwargs.setdefault("bases", [HistoryActorBase])
    return HistoricalRecords(**kwargs)


@receiver(pre_create_historical_record)
def _keep_username(sender, instance, history_instance, **kwargs):
    user = history_instance.history_user
    history_instance.history_username = user.get_username() if user else "system"


def as_actor(obj: models.Model, actor) -> models.Model:
    """Name the acting user for the history row of the next save (outside requests too)."""
    obj._history_user = actor if getattr(actor, "pk", None) else None
    return obj

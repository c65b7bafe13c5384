"""Base models shared by the domain apps."""

import uuid

from django.db import models

from .exceptions import ApplicationError

# Default of optional service arguments where None is a real value ("clear this field").
UNSET = object()


class GovernedQuerySet(models.QuerySet):
    """A queryset that cannot bypass history and audit: no bulk update, no bulk delete.

    Writes go one object at a time through the services, which record history and audit. A
    model may name ``HOUSEKEEPING_FIELDS`` (such as ``last_used_at``) that are not governed
    content and may be bulk-updated.
    """

    def update(self, **kwargs):
        housekeeping = getattr(self.model, "HOUSEKEEPING_FIELDS", frozenset())
        if kwargs and set(kwargs) <= housekeeping:
            return super().update(**kwargs)
        raise ApplicationError(
            "bulk_write_refused",
            f"{self.model._meta.verbose_name_plural} cannot be bulk-updated; "
            "change them one at a time through the services so history is kept.",
        )

    def delete(self):
        raise ApplicationError(
            "bulk_write_refused",
            f"{self.model._meta.verbose_name_plural} cannot be bulk-deleted; "
            "delete them one at a time through the services so history is kept.",
        )

    update.queryset_only = True
    delete.queryset_only = True


class GovernedManager(models.Manager.from_queryset(GovernedQuerySet)):
    pass


class BaseModel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = GovernedManager()

    class Meta:
        abstract = True

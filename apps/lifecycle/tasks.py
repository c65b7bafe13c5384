"""The sunset beat task: products whose approved deprecation reached its sunset date retire."""

from celery import current_app, shared_task
from django.conf import settings


@shared_task(bind=True, acks_late=True, name="lifecycle.sunset_due")
def sunset_due_task(self) -> list[dict]:
    """Thin wrapper: each due deprecation through ``product_sunset`` (idempotent: a redelivery
    finds nothing due)."""
    from .models import LifecycleRequest
    from .services import product_sunset, sunsets_due

    return [
        product_sunset(request=LifecycleRequest.objects.get(pk=req.pk)) for req in sunsets_due()
    ]


current_app.add_periodic_task(
    settings.LIFECYCLE_SUNSET_EVERY_SECONDS,
    sunset_due_task.s(),
    name="lifecycle: retire products at their sunset date",
)

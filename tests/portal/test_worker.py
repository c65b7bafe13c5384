"""The usage rollup on a real Celery worker process, and its place in the beat schedule."""

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from apps.portal.models import UsageRecord, UsageRollup
from apps.portal.tasks import rollup_usage
from plmportal.celery import app

from .factories import gateway_setup


def test_the_rollup_is_in_the_beat_schedule(settings):
    entry = app.conf.beat_schedule["portal: roll up usage"]
    assert entry["task"] == "portal.rollup_usage"
    assert entry["schedule"] == settings.PORTAL_ROLLUP_EVERY_SECONDS


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_rolls_usage_up_per_hour_and_day(celery_worker):
    """GIVEN 30 committed usage records of one subscription, within the last hour
    WHEN the rollup task goes through the broker to a real worker process
    THEN the hour and day rollups it writes sum to the records."""
    setup = gateway_setup()
    now = timezone.now()
    UsageRecord.objects.bulk_create(
        UsageRecord(
            created_at=now - timedelta(seconds=30 + i),
            subscription=setup.subscription,
            api=setup.api,
            application=setup.application,
            key=setup.key,
            endpoint="chat",
            status_code=200,
            outcome="ok",
            tokens_in=10,
            tokens_out=5,
            cost=Decimal("0.0001"),
            latency_ms=20,
        )
        for i in range(30)
    )
    rollup_usage.apply_async(queue=celery_worker.queue)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        days = UsageRollup.objects.filter(subscription=setup.subscription, period="day")
        if days.aggregate(n=Sum("requests"))["n"] == 30:
            break
        time.sleep(0.2)
    for period in ("hour", "day"):
        sums = UsageRollup.objects.filter(subscription=setup.subscription, period=period).aggregate(
            requests=Sum("requests"), tokens=Sum("tokens_in"), cost=Sum("cost")
        )
        assert sums == {"requests": 30, "tokens": 300, "cost": Decimal("0.003")}, (
            period,
            celery_worker.output()[-3000:],
        )

"""Usage rollups agree with the raw records, per hour and per day, and a rerun changes
nothing; the usage series reads rollups for closed buckets and records for the open ones."""

import itertools
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from apps.portal import rollups, selectors
from apps.portal.models import UsageRecord, UsageRollup, UsageRollupState
from apps.portal.tasks import rollup_usage as rollup_task

from .factories import api_key, application, gateway_setup, subscription

pytestmark = pytest.mark.django_db

OUTCOMES = [("ok", 200), ("ok", 200), ("error", 502), ("rejected", 400), ("rate_limited", 429)]


def _record(setup, sub, key, at: datetime, rng: random.Random) -> UsageRecord:
    outcome, code = rng.choice(OUTCOMES)
    ok = outcome == "ok"
    return UsageRecord(
        created_at=at,
        subscription=sub,
        api=sub.api,
        application=sub.application,
        key=key,
        endpoint="chat",
        status_code=code,
        outcome=outcome,
        tokens_in=rng.randint(1, 500) if ok else 0,
        tokens_out=rng.randint(1, 500) if ok else 0,
        cost=Decimal(rng.randint(1, 10**6)) / Decimal(10**8) if ok else Decimal(0),
        latency_ms=rng.randint(1, 900),
    )


@pytest.fixture
def usage():
    """Two subscriptions with records spread over three UTC days (the last one today)."""
    setup = gateway_setup()
    other_app = application(setup.developer)
    other = subscription(other_app, setup.plan)
    other_key, _ = api_key(other_app)
    rng = random.Random(7)
    now = timezone.now()
    rows = []
    for _ in range(400):
        at = now - timedelta(minutes=rng.randint(1, 60 * 60))
        sub, key = rng.choice([(setup.subscription, setup.key), (other, other_key)])
        rows.append(_record(setup, sub, key, at, rng))
    UsageRecord.objects.bulk_create(rows)
    return setup, other, rows


def _expected(rows, period):
    out = defaultdict(lambda: defaultdict(Decimal))
    for r in rows:
        start = selectors.bucket_start(r.created_at, period)
        b = out[(r.subscription_id, start)]
        b["requests"] += 1
        b["errors"] += r.outcome in ("error", "rejected")
        b["rate_limited"] += r.outcome == "rate_limited"
        b["tokens_in"] += r.tokens_in
        b["tokens_out"] += r.tokens_out
        b["cost"] += r.cost
        b["latency_ms_sum"] += r.latency_ms
        b["latency_ms_max"] = max(b["latency_ms_max"], r.latency_ms)
    return {k: dict(v) for k, v in out.items()}


def _stored(period):
    fields = ["requests", "errors", "rate_limited", "tokens_in", "tokens_out", "cost"]
    fields += ["latency_ms_sum", "latency_ms_max"]
    return {
        (r.subscription_id, r.start.astimezone(UTC)): {f: getattr(r, f) for f in fields}
        for r in UsageRollup.objects.filter(period=period)
    }


def test_rollups_agree_with_the_raw_records_per_hour_and_per_day(usage):
    _, _, rows = usage
    report = rollups.rollup_usage()
    assert report.created > 0
    for period in ("hour", "day"):
        expected, stored = _expected(rows, period), _stored(period)
        assert stored.keys() == expected.keys()
        for key, figures in expected.items():
            assert {k: Decimal(v) for k, v in stored[key].items()} == figures, (period, key)
    day_total = sum(v["requests"] for v in _stored("day").values())
    assert day_total == len(rows) == sum(v["requests"] for v in _stored("hour").values())


def test_a_rerun_changes_nothing(usage):
    rollups.rollup_usage()
    before = list(UsageRollup.objects.order_by("pk").values())
    again = rollups.rollup_usage(since=timezone.now() - timedelta(days=5))
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)
    assert list(UsageRollup.objects.order_by("pk").values()) == before
    assert rollup_task.apply().get() == {"created": 0, "updated": 0, "deleted": 0}


def test_new_records_update_their_buckets_only(usage):
    setup, _, rows = usage
    rollups.rollup_usage()
    rng = random.Random(1)
    late = _record(setup, setup.subscription, setup.key, timezone.now(), rng)
    late.save()
    report = rollups.rollup_usage()
    assert report.created + report.updated <= 4  # the hour and the day of that subscription
    for period in ("hour", "day"):
        expected = _expected([*rows, late], period)
        stored = _stored(period)
        assert {k: {f: Decimal(v) for f, v in s.items()} for k, s in stored.items()} == expected


def test_usage_series_mixes_rollups_and_fresh_records(usage, django_assert_max_num_queries):
    """GIVEN records rolled up and then one more call WHEN the series is read THEN each bucket
    has every record, the last call included, and empty buckets are there too."""
    setup, _, rows = usage
    rollups.rollup_usage()
    state = UsageRollupState.objects.get()
    assert state.covered_until is not None
    fresh = _record(setup, setup.subscription, setup.key, timezone.now(), random.Random(3))
    fresh.save()
    mine = [r for r in [*rows, fresh] if r.subscription_id == setup.subscription.pk]
    since = timezone.now() - timedelta(days=3)
    for period in ("hour", "day"):
        with django_assert_max_num_queries(4):
            series = selectors.usage_series(
                subscription=setup.subscription, period=period, since=since
            )
        expected = _expected(mine, period)
        starts = [b.start for b in series]
        step = timedelta(hours=1) if period == "hour" else timedelta(days=1)
        assert all(b - a == step for a, b in itertools.pairwise(starts))
        assert starts[-1] == selectors.bucket_start(timezone.now(), period)
        for bucket in series:
            want = expected.get((setup.subscription.pk, bucket.start))
            if want is None:
                assert bucket.requests == 0 and bucket.latency_avg_ms is None
                continue
            assert bucket.requests == want["requests"]
            assert bucket.errors == want["errors"]
            assert bucket.rate_limited == want["rate_limited"]
            assert bucket.tokens_in + bucket.tokens_out == want["tokens_in"] + want["tokens_out"]
            assert bucket.cost == want["cost"]
            assert bucket.latency_max_ms == want["latency_ms_max"]
            assert bucket.latency_avg_ms == pytest.approx(
                float(want["latency_ms_sum"] / want["requests"])
            )
        assert sum(b.requests for b in series) == len(mine)


def test_usage_series_without_any_rollup_reads_the_records(usage):
    setup, _, rows = usage
    series = selectors.usage_series(
        application=setup.application, period="day", since=timezone.now() - timedelta(days=3)
    )
    assert sum(b.requests for b in series) == sum(
        r.application_id == setup.application.pk for r in rows
    )
    by_api = selectors.usage_series(
        api=setup.api, period="hour", since=timezone.now() - timedelta(days=3)
    )
    assert sum(b.requests for b in by_api) == len(rows)

"""Audit-trail scale: filtered trail pages at 10k and at 1M audit events.

Seeds a throw-away database (the test database of DATABASE_URL, or a SQLite file), measures
filtered pages through the whole Django stack (middleware, session auth as an auditor, the
filter set, the keyset page, templates or serializers), grows the trail a hundredfold, measures
again and prints the ratio. Goal: ratio <= 1.5 (every page is answered from indexes, and no page
counts the matching events).

The events are inserted in bulk (COPY on PostgreSQL, executemany on SQLite), not through
``audit_record``: their chain hashes are dummy (unique) values. The bench measures reads; the
chain is what the verifier checks, not what a page reads.

    .venv/bin/python bench/audit.py [--small 10000] [--large 1000000] [--repeat 30]
"""

import argparse
import datetime as dt
import json
import os
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plmportal.settings")
os.environ.setdefault("DJANGO_ALLOWED_HOSTS", "testserver")

import django

django.setup()

from django.db import connection, transaction
from django.test import Client
from django.test.utils import override_settings

from apps.accounts import services as accounts
from apps.accounts.roles import AUDITOR, PRODUCT_MANAGER
from apps.audit.models import AuditChainHead, AuditEvent
from apps.catalog import services as catalog

START = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
STEP = dt.timedelta(seconds=30)  # one event every 30 s: 1M events span about a year
ACTORS = [f"user{i}" for i in range(50)]
FAMILIES = {
    "product": ["created", "updated", "stage_changed"],
    "release": ["created", "frozen", "released", "deprecated"],
    "change_request": ["created", "submitted", "approved", "rejected", "implemented"],
    "subscription": ["requested", "approved", "rejected", "suspended"],
    "key": ["created", "rotated", "revoked"],
    "login": ["succeeded", "failed"],
    "eval_run": ["created", "finished"],
    "permission": ["granted", "removed"],
}
VERBS = [f"{family}.{action}" for family, actions in FAMILIES.items() for action in actions]
TYPES = [
    "catalog.product",
    "releases.release",
    "changes.changerequest",
    "portal.subscription",
    "portal.apikey",
    "accounts.user",
    "evaluations.evalrun",
]
COLUMNS = [
    "seq",
    "at",
    "actor_id",
    "actor_username",
    "verb",
    "object_type",
    "object_id",
    "object_repr",
    "product_id",
    "before",
    "after",
    "ip_address",
    "request_id",
    "prev_hash",
    "hash",
]


def rows(start: int, count: int, products: list, rng: random.Random):
    for seq in range(start, start + count):
        verb = rng.choice(VERBS)
        object_id = str(rng.randrange(20_000))
        before = json.dumps({"name": f"old {seq}"}) if verb.endswith("updated") else None
        yield (
            seq,
            START + STEP * seq,
            None,
            rng.choice(ACTORS),
            verb,
            rng.choice(TYPES),
            object_id,
            f"object {object_id}",
            str(rng.choice(products)) if rng.random() < 0.9 else None,
            before,
            json.dumps({"name": f"new {seq}", "n": seq}),
            "10.0.0.1",
            "",
            f"{seq - 1:064x}",
            f"{seq:064x}",
        )


def insert(start: int, count: int, products: list, rng: random.Random) -> None:
    table = AuditEvent._meta.db_table
    batch = 20_000
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            sql = f"COPY {table} ({', '.join(COLUMNS)}) FROM STDIN"
            with cursor.cursor.copy(sql) as copy:
                for row in rows(start, count, products, rng):
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(COLUMNS))
            sql = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({marks})"  # noqa: S608
            pending = []
            for row in rows(start, count, products, rng):
                at, product_id = (
                    str(row[1].replace(tzinfo=None)),
                    row[8] and row[8].replace("-", ""),
                )
                pending.append((row[0], at, *row[2:8], product_id, *row[9:]))
                if len(pending) >= batch:
                    cursor.executemany(sql, pending)
                    pending = []
            if pending:
                cursor.executemany(sql, pending)
        last = start + count - 1
        AuditChainHead.objects.filter(id=1).update(last_seq=last, last_hash=f"{last:064x}")


def analyze() -> None:
    """Fresh planner statistics after a bulk load, as autovacuum would give a live database."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def measure(client: Client, url: str, repeat: int) -> tuple[float, float]:
    """(best, median) of ``repeat`` requests, in ms (the ratio uses the best)."""
    for _ in range(3):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code, response.content[:300])
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        client.get(url)
        samples.append(time.perf_counter() - t0)
    return min(samples) * 1000, statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    default_large = 1_000_000
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=default_large)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
    try:
        with override_settings(ALLOWED_HOSTS=["testserver"]):
            run(args)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def urls(products: list, newest: dt.datetime, middle_seq: int) -> dict[str, str]:
    month_ago = (newest - dt.timedelta(days=30)).date().isoformat()
    today = newest.date().isoformat()
    product = products[0]
    return {
        "page: actor+verb.+dates": (
            f"/audit/?actor=user7&verb=subscription.&at_after={month_ago}&at_before={today}"
        ),
        "page: product": f"/audit/?product={product}",
        "page: product, deep": f"/audit/?product={product}&before={middle_seq}",
        "page: object": "/audit/?object_type=catalog.product&object_id=42",
        "api: actor+prefix+dates": (
            f"/api/v1/audit-events/?actor=user7&verb_prefix=subscription."
            f"&at_after={month_ago}&at_before={today}"
        ),
        "api: product": f"/api/v1/audit-events/?product={product}&page_size=50",
    }


def run(args) -> None:
    team = accounts.team_create(actor=None, slug="bench", name="Bench")
    pm = accounts.user_create(actor=None, username="bench-pm", password="bench-pass-9876")
    accounts.membership_add(actor=None, user=pm, team=team, role=PRODUCT_MANAGER)
    auditor = accounts.user_create(actor=None, username="bench-audit", password="bench-pass-9876")
    accounts.membership_add(actor=None, user=auditor, team=team, role=AUDITOR)
    pm = type(pm).objects.get(pk=pm.pk)
    products = [
        catalog.product_create(actor=pm, slug=f"p{i}", name=f"P{i}", owner_team=team).pk
        for i in range(20)
    ]
    client = Client()
    client.force_login(auditor)
    rng = random.Random(7)

    first = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first() + 1
    t0 = time.perf_counter()
    insert(first, args.small, [uuid.UUID(str(p)) for p in products], rng)
    analyze()
    total = AuditEvent.objects.count()
    print(
        f"engine: {connection.vendor}; seeded {total} audit events in "
        f"{time.perf_counter() - t0:.1f}s (dummy chain hashes: the bench measures reads)"
    )
    newest = AuditEvent.objects.order_by("-seq").first()
    pages = urls(products, newest.at, first + args.small // 2)
    small = {name: measure(client, url, args.repeat) for name, url in pages.items()}

    t0 = time.perf_counter()
    insert(first + args.small, args.large - args.small, products, rng)
    analyze()
    total_large = AuditEvent.objects.count()
    print(f"grew to {total_large} events in {time.perf_counter() - t0:.1f}s")
    newest = AuditEvent.objects.order_by("-seq").first()
    pages = urls(products, newest.at, first + args.large // 2)
    large = {name: measure(client, url, args.repeat) for name, url in pages.items()}

    head = f"{'filtered trail page':<26}{'@' + str(total):>9}{'@' + str(total_large):>10}"
    print(f"\n{head}{'ratio':>7}   (best of {args.repeat}; medians in brackets)")
    worst = 0.0
    for name in pages:
        (s_best, s_med), (l_best, l_med) = small[name], large[name]
        ratio = l_best / s_best
        worst = max(worst, ratio)
        print(
            f"{name:<26}{s_best:>7.2f}ms{l_best:>8.2f}ms{ratio:>7.2f}"
            f"   [{s_med:.2f}ms, {l_med:.2f}ms]"
        )
    print(f"\nworst ratio {worst:.2f} (goal <= 1.5): {'OK' if worst <= 1.5 else 'MISSED'}")


if __name__ == "__main__":
    main()

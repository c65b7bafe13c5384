"""Racing transitions against the real database: exactly one wins, the other gets a 409.

On PostgreSQL (CI) the row locks decide; on SQLite the database-wide write lock does.
"""

import threading

import pytest
from django.db import connection

from apps.changes import services as changes
from apps.core.exceptions import Conflict
from apps.releases.models import Release
from tests.changes.helpers import PASSWORD, released, submitted_cr, team_reviewer
from tests.factories import member

pytestmark = pytest.mark.django_db(transaction=True)


def _race(*calls):
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait(timeout=10)
            results[i] = ("ok", call())
        except Conflict as exc:
            results[i] = ("conflict", exc)
        except Exception as exc:
            results[i] = ("error", exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def _approved(pm, reviewer, **kwargs):
    cr = submitted_cr(pm, **kwargs)
    cr, _ = changes.change_request_approve(actor=reviewer, cr=cr, password=PASSWORD)
    assert cr.state == "approved"
    return cr


def test_two_implements_of_one_change_request():
    pm = member("product_manager")
    reviewer = team_reviewer(pm)
    cr = _approved(pm, reviewer)
    results = _race(*[lambda: changes.change_request_implement(actor=pm, cr=cr)] * 2)
    outcomes = sorted(r[0] for r in results)
    assert outcomes == ["conflict", "ok"], results
    loser = next(r[1] for r in results if r[0] == "conflict")
    assert loser.status == 409
    assert Release.objects.filter(product=cr.product, status="released").count() == 1


def test_two_change_requests_racing_to_release_one_product():
    pm = member("product_manager")
    reviewer = team_reviewer(pm)
    base = released(pm)
    a = _approved(pm, reviewer, baseline=base, version="1.1.0", text="Idea A.")
    b = _approved(pm, reviewer, baseline=base, version="1.2.0", text="Idea B.")
    results = _race(
        lambda: changes.change_request_implement(actor=pm, cr=a),
        lambda: changes.change_request_implement(actor=pm, cr=b),
    )
    outcomes = sorted(r[0] for r in results)
    assert outcomes == ["conflict", "ok"], results
    loser = next(r[1] for r in results if r[0] == "conflict")
    assert loser.code == "stale"
    released_now = Release.objects.filter(product=base.product, status="released")
    assert released_now.count() == 1

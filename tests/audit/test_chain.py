"""The audit chain: append-only, and the verifier finds any change made behind its back."""

import itertools

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record, chain_verify
from apps.core.exceptions import ApplicationError
from tests.factories import member

pytestmark = pytest.mark.django_db


def _events(n: int = 5) -> list[AuditEvent]:
    user = member("product_manager")
    with transaction.atomic():
        return [
            audit_record(
                actor=user,
                verb="test.event",
                object_type="test",
                object_id=str(i),
                after={"i": i, "nested": {"b": [1, 2], "a": "x"}},
            )
            for i in range(n)
        ]


def _sql(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _verify_exit() -> tuple[int, str]:
    try:
        call_command("audit_verify")
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, ""


def test_intact_chain_verifies(capsys):
    _events()
    code, _ = _verify_exit()
    assert code == 0
    assert "intact" in capsys.readouterr().out


def test_events_link_to_their_predecessor():
    events = _events(3)
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    for prev, cur in itertools.pairwise(events):
        assert cur.prev_hash == prev.hash


def test_altered_row_is_named():
    """GIVEN an intact chain WHEN one row's content is changed in raw SQL THEN it is named."""
    events = _events()
    target = events[2]
    _sql("UPDATE audit_auditevent SET verb = %s WHERE seq = %s", ["test.forged", target.seq])
    report = chain_verify()
    assert not report.intact
    assert report.first_bad_seq == target.seq
    code, message = _verify_exit()
    assert code == 1
    assert f"#{target.seq}" in message


def test_deleted_row_is_named():
    events = _events()
    target = events[1]
    _sql("DELETE FROM audit_auditevent WHERE seq = %s", [target.seq])
    report = chain_verify()
    assert not report.intact
    assert report.first_bad_seq == target.seq
    assert _verify_exit()[0] == 1


def test_deleted_tail_is_detected():
    events = _events()
    _sql("DELETE FROM audit_auditevent WHERE seq = %s", [events[-1].seq])
    report = chain_verify()
    assert not report.intact
    assert report.first_bad_seq == events[-1].seq


def test_reordered_rows_are_detected():
    """Swapping two events' sequence numbers (a reorder) breaks the links."""
    events = _events()
    a, b = events[1].seq, events[3].seq
    _sql("UPDATE audit_auditevent SET seq = -1 WHERE seq = %s", [a])
    _sql("UPDATE audit_auditevent SET seq = %s WHERE seq = %s", [a, b])
    _sql("UPDATE audit_auditevent SET seq = %s WHERE seq = -1", [b])
    report = chain_verify()
    assert not report.intact
    assert report.first_bad_seq == a
    assert _verify_exit()[0] == 1


def test_rehashed_row_still_breaks_the_next_link():
    """A forger who also recomputes the row's own hash is caught by the next event's link, and
    the verifier names the row that was rewritten (the next one still links to its old hash)."""
    events = _events()
    target = AuditEvent.objects.get(seq=events[1].seq)
    target.verb = "test.forged"
    new_hash = target.compute_hash(target.prev_hash)
    _sql(
        "UPDATE audit_auditevent SET verb = %s, hash = %s WHERE seq = %s",
        ["test.forged", new_hash, target.seq],
    )
    report = chain_verify()
    assert not report.intact
    assert (report.kind, report.first_bad_seq) == ("altered", events[1].seq)


def test_events_are_append_only_through_the_orm():
    event = _events(1)[0]
    event.verb = "changed"
    with pytest.raises(ApplicationError):
        event.save()
    with pytest.raises(ApplicationError):
        event.delete()
    with pytest.raises(ApplicationError):
        AuditEvent.objects.all().update(verb="x")
    with pytest.raises(ApplicationError):
        AuditEvent.objects.all().delete()


def test_actor_username_survives_user_deletion():
    event = _events(1)[0]
    username = event.actor_username
    event.actor.delete()
    event = AuditEvent.objects.get(seq=event.seq)
    assert event.actor_id is None
    assert event.actor_username == username
    assert chain_verify().intact

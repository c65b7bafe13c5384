# ruff: noqa: S608 -- forging rows with raw SQL is what these helpers are for
"""What the attacker does: raw SQL on the audit tables (the ORM refuses to change events)."""

import base64
import json

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, transaction

from apps.audit.models import AuditEvent
from apps.audit.services import audit_record


def new_key_b64() -> str:
    """A fresh private key as AUDIT_SIGNING_KEY takes it (base64 of the 32 raw bytes)."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw).decode()


def make_events(n: int, actor="tester") -> list[AuditEvent]:
    """``n`` events; by default by an actor known only by name, so no other event (a user's
    creation) comes before them and seqs start at the chain's head + 1."""
    with transaction.atomic():
        return [
            audit_record(
                actor=actor,
                verb="test.event",
                object_type="test",
                object_id=str(i),
                before={"i": i - 1},
                after={"i": i, "nested": {"b": [1, 2], "a": "x"}},
            )
            for i in range(n)
        ]


def sql(statement: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def json_param() -> str:
    """A JSON parameter placeholder for the database in use."""
    return "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "%s"


def set_head(seq: int, hash_: str) -> None:
    sql("UPDATE audit_auditchainhead SET last_seq = %s, last_hash = %s WHERE id = 1", [seq, hash_])


def write_event(event: AuditEvent) -> None:
    """UPDATE one event's row to ``event``'s content, prev_hash and hash (by seq)."""
    sql(
        "UPDATE audit_auditevent SET actor_username = %s, verb = %s, object_id = %s, "
        f"before = {json_param()}, after = {json_param()}, prev_hash = %s, hash = %s "
        "WHERE seq = %s",
        [
            event.actor_username,
            event.verb,
            event.object_id,
            json.dumps(event.before),
            json.dumps(event.after),
            event.prev_hash,
            event.hash,
            event.seq,
        ],
    )


def insert_event(event: AuditEvent) -> None:
    sql(
        "INSERT INTO audit_auditevent (seq, at, actor_id, actor_username, verb, object_type, "
        "object_id, object_repr, product_id, before, after, ip_address, request_id, prev_hash, "
        f"hash) VALUES (%s, %s, NULL, %s, %s, %s, %s, %s, NULL, {json_param()}, {json_param()}, "
        "%s, %s, %s, %s)",
        [
            event.seq,
            connection.ops.adapt_datetimefield_value(event.at),
            event.actor_username,
            event.verb,
            event.object_type,
            event.object_id,
            event.object_repr,
            json.dumps(event.before),
            json.dumps(event.after),
            event.ip_address,
            event.request_id,
            event.prev_hash,
            event.hash,
        ],
    )


def shift_seqs(from_seq: int, by: int) -> None:
    """Renumber events from ``from_seq`` on by ``by`` (through negatives: PK uniqueness)."""
    sql("UPDATE audit_auditevent SET seq = -(seq + %s) WHERE seq >= %s", [by, from_seq])
    sql("UPDATE audit_auditevent SET seq = -seq WHERE seq < 0")


def swap_seqs(a: int, b: int) -> None:
    sql("UPDATE audit_auditevent SET seq = -1 WHERE seq = %s", [a])
    sql("UPDATE audit_auditevent SET seq = %s WHERE seq = %s", [a, b])
    sql("UPDATE audit_auditevent SET seq = %s WHERE seq = -1", [b])


def rewrite_from(seq: int, **changes) -> None:
    """A self-consistent rewrite: change event ``seq``, recompute every hash from it on and
    move the chain head to the new last hash, as a forger who knows the hashing would."""
    events = list(AuditEvent.objects.filter(seq__gte=seq - 1).order_by("seq"))
    prev = events[0].hash if events[0].seq == seq - 1 else "0" * 64
    for event in events:
        if event.seq < seq:
            continue
        if event.seq == seq:
            for name, value in changes.items():
                setattr(event, name, value)
        event.prev_hash = prev
        event.hash = event.compute_hash(prev)
        write_event(event)
        prev = event.hash
    set_head(events[-1].seq, prev)


def verify_exit(*args: str) -> tuple[int, str]:
    try:
        call_command("audit_verify", *args)
    except CommandError as exc:
        return exc.returncode, str(exc)
    return 0, ""

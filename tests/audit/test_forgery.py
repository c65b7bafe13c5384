# ruff: noqa: S608 -- raw SQL is the attacker's tool
"""Forgeries of the audit trail, each done the attacker's way (raw SQL), each named by the
verifier with the right kind and seq."""

import base64
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.checkpoints import checkpoint_create
from apps.audit.ed25519 import checkpoint_payload, key_id_of
from apps.audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from apps.audit.services import chain_verify

from .forgery_helpers import (
    insert_event,
    json_param,
    make_events,
    new_key_b64,
    rewrite_from,
    set_head,
    shift_seqs,
    sql,
    swap_seqs,
    verify_exit,
)

pytestmark = pytest.mark.django_db

N = 5  # a checkpoint every 5 events: 12 events give checkpoints at #5 and #10


@pytest.fixture(autouse=True)
def _signing(settings):
    settings.AUDIT_SIGNING_KEY = new_key_b64()
    settings.AUDIT_PUBLIC_KEYS_EXTRA = []
    settings.AUDIT_CHECKPOINT_EVERY = N


@pytest.fixture
def chain() -> list[AuditEvent]:
    events = make_events(12)
    assert list(AuditCheckpoint.objects.order_by("seq").values_list("seq", flat=True)) == [5, 10]
    return events


def _named(kind: str, seq: int):
    report = chain_verify()
    assert not report.intact
    assert (report.kind, report.first_bad_seq) == (kind, seq), report.problem
    code, message = verify_exit()
    assert code == 1
    assert f"#{seq}" in message
    assert f"[{kind}]" in message
    return report


def test_an_intact_chain_with_checkpoints_verifies(chain, capsys):
    report = chain_verify()
    assert report.intact, report.problem
    assert (report.checked, report.checkpoints_checked, report.anchored_seq) == (12, 2, 10)
    assert report.unanchored == 2
    assert any("not yet anchored" in note for note in report.notes)
    assert verify_exit() == (0, "")
    out = capsys.readouterr().out
    assert "intact" in out
    assert "2 checkpoint signatures verified" in out


@pytest.mark.parametrize(
    ("column", "value"),
    [("verb", "test.forged"), ("before", '{"i": 99}'), ("after", '{"i": 99}')],
)
def test_an_altered_event_is_named(chain, column, value):
    """GIVEN an intact chain WHEN one event's verb, before or after is changed in SQL
    THEN the verifier names that event as altered."""
    param = json_param() if column in ("before", "after") else "%s"
    sql(f"UPDATE audit_auditevent SET {column} = {param} WHERE seq = %s", [value, 7])
    report = _named("altered", 7)
    assert "content does not match its hash" in report.problem


def test_an_altered_link_is_named(chain):
    sql("UPDATE audit_auditevent SET prev_hash = %s WHERE seq = %s", ["f" * 64, 4])
    _named("altered", 4)


def test_an_altered_and_rehashed_event_is_named(chain):
    """The forger recomputes the changed event's own hash: the next event still links to the
    original hash, and the verifier names the rewritten one."""
    target = AuditEvent.objects.get(seq=3)
    target.verb = "test.forged"
    sql(
        "UPDATE audit_auditevent SET verb = %s, hash = %s WHERE seq = %s",
        [target.verb, target.compute_hash(target.prev_hash), 3],
    )
    _named("altered", 3)


def test_a_deleted_event_is_named(chain):
    sql("DELETE FROM audit_auditevent WHERE seq = %s", [6])
    report = _named("deleted", 6)
    assert "#6 was deleted" in report.problem


def test_a_deleted_and_renumbered_event_is_named(chain):
    """Deleting #4 and renumbering the later events to close the gap still names #4."""
    sql("DELETE FROM audit_auditevent WHERE seq = %s", [4])
    shift_seqs(5, -1)
    _named("deleted", 4)


def test_an_inserted_event_is_named(chain):
    """GIVEN an intact chain WHEN a forged event is slipped in at #4 (later events renumbered;
    the forged one linked and hashed to look right) THEN #4 is named as inserted."""
    before = AuditEvent.objects.get(seq=3)
    shift_seqs(4, 1)
    forged = AuditEvent(
        seq=4,
        at=before.at + timedelta(microseconds=1),
        actor_username="mallory",
        verb="test.forged",
        object_type="test",
        object_id="x",
        after={"forged": True},
    )
    forged.prev_hash = before.hash
    forged.hash = forged.compute_hash(before.hash)
    insert_event(forged)
    report = _named("inserted", 4)
    assert "inserted" in report.problem


def test_an_event_appended_behind_the_heads_back_is_named(chain):
    last = AuditEvent.objects.get(seq=12)
    forged = AuditEvent(
        seq=13, at=timezone.now(), actor_username="mallory", verb="test.forged", after={}
    )
    forged.prev_hash = last.hash
    forged.hash = forged.compute_hash(last.hash)
    insert_event(forged)
    _named("inserted", 13)


@pytest.mark.parametrize(("a", "b"), [(2, 4), (7, 8)])
def test_reordered_events_are_named(chain, a, b):
    swap_seqs(a, b)
    report = _named("reordered", a)
    assert "reordered" in report.problem


def test_a_self_consistent_rewrite_fails_on_the_checkpoint(chain):
    """GIVEN a chain anchored by signed checkpoints at #5 and #10
    WHEN a forger changes #7 and recomputes every hash after it and the chain head
    THEN the links and hashes all check out, but the chain no longer matches the checkpoint
    signed at #10: the verifier names it."""
    rewrite_from(7, verb="test.forged", after={"i": 99})
    head = AuditChainHead.objects.get(id=1)
    assert head.last_hash == AuditEvent.objects.get(seq=12).hash  # internally consistent
    report = _named("checkpoint_mismatch", 10)
    assert "#6 to #10" in report.problem  # the last verified checkpoint is #5


def test_a_self_consistent_rewrite_before_the_first_checkpoint(chain):
    rewrite_from(1, actor_username="mallory")
    _named("checkpoint_mismatch", 5)


def test_a_rewrite_of_unanchored_events_is_beyond_reach_but_reported(chain):
    """Events after the last checkpoint are not anchored yet: a self-consistent rewrite of
    them passes, and the report says they are not anchored (the next checkpoint anchors)."""
    rewrite_from(11, verb="test.forged")
    report = chain_verify()
    assert report.intact
    assert report.unanchored == 2
    assert any("#11 to #12 are not yet anchored" in note for note in report.notes)


def test_a_forged_checkpoint_hash_fails_on_the_signature(chain):
    """GIVEN a self-consistent rewrite WHEN the forger also updates the checkpoint's head_hash
    to match THEN the checkpoint's signature no longer verifies."""
    rewrite_from(7, verb="test.forged")
    new_hash = AuditEvent.objects.get(seq=10).hash
    sql("UPDATE audit_auditcheckpoint SET head_hash = %s WHERE seq = %s", [new_hash, 10])
    report = _named("bad_signature", 10)
    assert "bad signature" in report.problem


def test_a_checkpoint_re_signed_with_another_key_is_refused(chain):
    """A forger with their own key re-signs the checkpoint (a valid signature, unknown key)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    rewrite_from(7, verb="test.forged")
    mallory = Ed25519PrivateKey.generate()
    cp = AuditCheckpoint.objects.get(seq=10)
    new_hash = AuditEvent.objects.get(seq=10).hash
    kid = key_id_of(mallory.public_key())
    signature = base64.b64encode(
        mallory.sign(checkpoint_payload(10, new_hash, cp.at_iso, kid))
    ).decode()
    sql(
        "UPDATE audit_auditcheckpoint SET head_hash = %s, key_id = %s, signature = %s "
        "WHERE seq = %s",
        [new_hash, kid, signature, 10],
    )
    report = _named("bad_signature", 10)
    assert kid in report.problem


def test_a_truncated_chain_is_named(chain):
    """GIVEN checkpoints at #5 and #10 WHEN the last events (#9 to #12) are deleted and the
    head is rewound to #8 THEN the chain is internally fine, but checkpoint #10 lies beyond its
    end: truncated."""
    sql("DELETE FROM audit_auditevent WHERE seq > %s", [8])
    set_head(8, AuditEvent.objects.get(seq=8).hash)
    report = _named("truncated", 9)
    assert "truncated after checkpoint seq 5" in report.problem


def test_a_deleted_tail_is_named_by_the_head(chain):
    sql("DELETE FROM audit_auditevent WHERE seq > %s", [11])
    report = _named("truncated", 12)
    assert "head records #12" in report.problem


def test_a_new_checkpoint_refuses_to_cover_a_truncation(chain):
    from apps.core.exceptions import ApplicationError

    sql("DELETE FROM audit_auditevent WHERE seq > %s", [8])
    set_head(8, AuditEvent.objects.get(seq=8).hash)
    with pytest.raises(ApplicationError) as exc:
        checkpoint_create(force=True)
    assert exc.value.code == "chain_truncated"


def test_a_deleted_checkpoint_is_noted(chain):
    sql("DELETE FROM audit_auditcheckpoint WHERE seq = %s", [5])
    report = chain_verify()
    assert report.intact
    assert any("no checkpoint at #5" in note for note in report.notes)


def test_the_json_report_names_the_problem(chain, capsys):
    import json

    swap_seqs(2, 4)
    assert verify_exit("--json")[0] == 1
    data = json.loads(capsys.readouterr().out)
    assert (data["intact"], data["kind"], data["first_bad_seq"]) == (False, "reordered", 2)
    assert data["checked"] == 1

"""Signed checkpoints: the key outside the database, the payload, when checkpoints are made."""

import base64
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.audit import signing
from apps.audit.checkpoints import checkpoint_create, checkpoint_latest
from apps.audit.ed25519 import (
    checkpoint_payload,
    key_id_for,
    load_public_key,
    verify_signature,
)
from apps.audit.models import AuditCheckpoint
from apps.audit.services import audit_record, chain_verify
from apps.audit.tasks import checkpoint as checkpoint_task
from apps.core.exceptions import ApplicationError
from plmportal.celery import app

from .forgery_helpers import make_events, new_key_b64

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _signing(settings):
    settings.AUDIT_SIGNING_KEY = new_key_b64()
    settings.AUDIT_PUBLIC_KEYS_EXTRA = []


# --- the key -------------------------------------------------------------------------------------


def test_the_key_comes_from_the_environment_as_base64(settings):
    raw = Ed25519PrivateKey.generate()
    settings.AUDIT_SIGNING_KEY = base64.b64encode(
        raw.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )
    ).decode()
    pem = signing.public_key_pem()
    assert load_public_key(pem).public_bytes_raw() == raw.public_key().public_bytes_raw()
    assert signing.key_id() == key_id_for(pem)
    assert len(signing.key_id()) == 16
    signature = signing.sign(b"hello")
    assert verify_signature(pem, b"hello", signature)
    assert not verify_signature(pem, b"hellO", signature)


def test_the_key_comes_from_the_environment_as_a_one_line_pem(settings):
    key = Ed25519PrivateKey.generate()
    settings.AUDIT_SIGNING_KEY = signing.private_key_pem(key).strip().replace("\n", "\\n")
    assert signing.key_id() == key_id_for(
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_a_bad_key_is_a_configuration_error_that_does_not_echo_it(settings):
    settings.AUDIT_SIGNING_KEY = "bm90LWEta2V5LW5vdC1hLWtleQ=="
    with pytest.raises(ImproperlyConfigured) as exc:
        signing.signing_key()
    assert "AUDIT_SIGNING_KEY" in str(exc.value)
    assert settings.AUDIT_SIGNING_KEY not in str(exc.value)


def test_without_a_key_a_file_is_generated_with_mode_0600_and_reused(settings, tmp_path):
    """GIVEN no AUDIT_SIGNING_KEY WHEN the key is first needed THEN a PEM file is generated
    (mode 0600) and the same key is read from it afterwards."""
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = str(tmp_path / "keys" / "audit.pem")
    kid = signing.key_id()
    path = tmp_path / "keys" / "audit.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    signing._load.cache_clear()
    assert signing.key_id() == kid


def test_the_default_key_file_is_in_the_data_dir(settings, tmp_path):
    settings.AUDIT_SIGNING_KEY = ""
    settings.AUDIT_SIGNING_KEY_FILE = ""
    settings.DATA_DIR = tmp_path
    signing.key_id()
    assert stat.S_IMODE((tmp_path / "audit-signing-key.pem").stat().st_mode) == 0o600


def test_the_verifier_module_imports_without_django():
    """A standalone verifier checks a checkpoint with no database or settings."""
    code = (
        "import sys; from apps.audit.ed25519 import verify_signature, checkpoint_payload; "
        "assert not any(m == 'django' or m.startswith('django.') for m in sys.modules), "
        "sorted(m for m in sys.modules if m.startswith('django'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_signed_payload_is_five_lines():
    assert checkpoint_payload(1000, "ab" * 32, "2026-01-02T03:04:05.000006+00:00", "k1") == (
        b"plm-audit-checkpoint:v1\n1000\n" + b"ab" * 32 + b"\n2026-01-02T03:04:05.000006+00:00\nk1"
    )


def test_malformed_signatures_and_keys_do_not_verify():
    pem = signing.public_key_pem()
    assert not verify_signature(pem, b"x", "not base64!")
    assert not verify_signature(pem, b"x", base64.b64encode(b"\0" * 64).decode())
    assert not verify_signature("not a pem", b"x", signing.sign(b"x"))


# --- making checkpoints -------------------------------------------------------------------------


@pytest.mark.django_db
def test_every_nth_event_signs_a_checkpoint(settings):
    settings.AUDIT_CHECKPOINT_EVERY = 3
    events = make_events(7)
    checkpoints = list(AuditCheckpoint.objects.order_by("seq"))
    assert [(c.seq, c.events) for c in checkpoints] == [(3, 3), (6, 3)]
    for cp in checkpoints:
        event = next(e for e in events if e.seq == cp.seq)
        assert cp.head_hash == event.hash
        assert cp.key_id == signing.key_id()
        assert verify_signature(
            signing.public_key_pem(),
            checkpoint_payload(cp.seq, cp.head_hash, cp.at.isoformat(), cp.key_id),
            cp.signature,
        )
    assert checkpoint_latest().seq == 6


@pytest.mark.django_db
def test_only_the_nth_append_costs_extra_queries(settings):
    """Appends between checkpoints do not touch the checkpoint table."""
    settings.AUDIT_CHECKPOINT_EVERY = 3
    make_events(1)
    with CaptureQueriesContext(connection) as plain:
        audit_record(actor="tester", verb="test.event")
    with CaptureQueriesContext(connection) as due:
        audit_record(actor="tester", verb="test.event")
    assert not any("audit_auditcheckpoint" in q["sql"] for q in plain.captured_queries)
    assert len(due.captured_queries) == len(plain.captured_queries) + 2


@pytest.mark.django_db
def test_checkpoints_are_append_only_through_the_orm(settings):
    settings.AUDIT_CHECKPOINT_EVERY = 1
    make_events(1)
    cp = AuditCheckpoint.objects.get()
    cp.head_hash = "0" * 64
    with pytest.raises(ApplicationError):
        cp.save()
    with pytest.raises(ApplicationError):
        cp.delete()
    with pytest.raises(ApplicationError):
        AuditCheckpoint.objects.all().update(head_hash="x")
    with pytest.raises(ApplicationError):
        AuditCheckpoint.objects.all().delete()


@pytest.mark.django_db
def test_checkpoint_create_anchors_new_events_only(settings):
    settings.AUDIT_CHECKPOINT_EVERY = 0
    assert checkpoint_create(force=True) is None  # nothing yet
    make_events(4)
    cp = checkpoint_create(force=True)
    assert (cp.seq, cp.events) == (4, 4)
    assert checkpoint_create(force=True) is None  # nothing new
    make_events(2)
    assert checkpoint_create(force=True).events == 2


@pytest.mark.django_db
def test_the_periodic_checkpoint_waits_until_the_oldest_unanchored_event_is_due(settings):
    """GIVEN fresh unanchored events WHEN the beat task runs with an hour's interval THEN it
    waits; with an interval already over it signs one."""
    settings.AUDIT_CHECKPOINT_EVERY = 0
    settings.AUDIT_CHECKPOINT_INTERVAL_SECONDS = 3600
    make_events(2)
    assert checkpoint_task.apply().get() is None
    settings.AUDIT_CHECKPOINT_INTERVAL_SECONDS = 0
    assert checkpoint_task.apply().get() == 2
    assert checkpoint_task.apply().get() is None


def test_the_checkpoint_task_is_in_the_beat_schedule():
    entry = app.conf.beat_schedule["audit: sign a checkpoint of the chain"]
    assert entry["task"] == "audit.checkpoint"
    assert entry["schedule"] <= 300


@pytest.mark.django_db
def test_checkpoints_of_a_rotated_key_verify_with_its_public_key_kept(settings):
    """GIVEN checkpoints signed by key A WHEN the portal moves to key B THEN they verify while
    A's public key is in AUDIT_PUBLIC_KEYS_EXTRA, and are named bad_signature without it."""
    settings.AUDIT_CHECKPOINT_EVERY = 2
    make_events(4)
    old_pem, old_id = signing.public_key_pem(), signing.key_id()
    settings.AUDIT_SIGNING_KEY = new_key_b64()
    make_events(2)  # checkpoint #6 under the new key
    assert AuditCheckpoint.objects.get(seq=6).key_id == signing.key_id() != old_id
    report = chain_verify()
    assert (report.kind, report.first_bad_seq) == ("bad_signature", 2)
    assert old_id in report.problem
    settings.AUDIT_PUBLIC_KEYS_EXTRA = [old_pem]
    report = chain_verify()
    assert report.intact, report.problem
    assert report.checkpoints_checked == 3


@pytest.mark.django_db
def test_the_checkpoint_command(settings, capsys):
    settings.AUDIT_CHECKPOINT_EVERY = 0
    make_events(3)
    call_command("audit_checkpoint")
    assert "checkpoint #3 signed" in capsys.readouterr().out
    call_command("audit_checkpoint")
    assert "no checkpoint needed" in capsys.readouterr().out
    call_command("audit_checkpoint", "--public-key")
    out = capsys.readouterr().out
    assert signing.key_id() in out
    assert "BEGIN PUBLIC KEY" in out
    call_command("audit_checkpoint", "--generate-key")
    generated = capsys.readouterr().out
    settings.AUDIT_SIGNING_KEY = generated
    assert signing.signing_key()

"""The standalone dossier verifier: ``python -m apps.compliance.verify_dossier``.

It runs without Django or a database: the subprocess tests drop ``DATABASE_URL`` and point
``DJANGO_SETTINGS_MODULE`` at a module that does not exist.
"""

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.conf import settings

from apps.audit import signing
from apps.compliance import verify_dossier
from apps.compliance.dossier import dossier_build
from tests.compliance.dossier_helpers import (
    dossier_world,
    new_private_key,
    public_pem,
    signing_key,  # noqa: F401 (fixture)
)

pytestmark = pytest.mark.django_db

ROOT = Path(settings.BASE_DIR)


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    env["DJANGO_SETTINGS_MODULE"] = "no_such_settings_module.bogus"
    env["PYTHONPATH"] = str(ROOT)
    return env


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "apps.compliance.verify_dossier", *args],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def exported(signing_key, tmp_path):  # noqa: F811
    """A dossier ZIP and the trusted public key, written to files."""
    world = dossier_world()
    dossier = dossier_build(actor=world.auditor, release=world.release)
    zip_path = tmp_path / dossier.filename
    zip_path.write_bytes(dossier.to_zip())
    key_path = tmp_path / "trusted.pem"
    key_path.write_text(public_pem(signing_key))
    return dossier, zip_path, key_path


def _rezip(data: bytes, *, replace: dict | None = None, drop=(), add: dict | None = None) -> bytes:
    """The same ZIP with some entries' bytes replaced, dropped or added."""
    replace, add = replace or {}, add or {}
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            if info.filename in drop:
                continue
            dst.writestr(info, replace.get(info.filename, src.read(info.filename)))
        for name, body in add.items():
            dst.writestr(name, body)
    return out.getvalue()


def test_importing_the_verifier_imports_no_django():
    """GIVEN a fresh interpreter WHEN it imports the verifier THEN no django module is loaded."""
    code = (
        "import sys, apps.compliance.verify_dossier as v; "
        "print(sorted(m for m in sys.modules if m == 'django' or m.startswith('django.')))"
    )
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}
    assert "apps.audit.ed25519" in imported
    assert not any(name.split(".")[0] == "django" for name in imported)


def test_an_intact_dossier_passes_without_a_database(exported):
    dossier, zip_path, key_path = exported
    done = _run(str(zip_path), "--public-key", str(key_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "dossier intact" in done.stdout
    assert f"{dossier.release.version}" in done.stdout
    assert "anchored to audit checkpoint #" in done.stdout


def test_json_report(exported):
    dossier, zip_path, key_path = exported
    done = _run(str(zip_path), "--public-key", str(key_path), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    manifest = json.loads(dossier.manifest)
    assert report["intact"] is True
    assert report["problems"] == []
    assert report["files_checked"] == len(manifest["files"])
    assert report["release"]["fingerprint"] == dossier.release.fingerprint
    assert report["checkpoint"]["seq"] == manifest["checkpoint"]["seq"]


def test_one_altered_byte_names_the_file(exported):
    """GIVEN a dossier WHEN one byte of evaluations/runs.json changes THEN the verifier names
    that file and fails."""
    dossier, zip_path, key_path = exported
    runs = bytearray(dossier.files["evaluations/runs.json"])
    at = runs.index(b'"passed": 1')
    runs[at + len('"passed": ')] = ord("2")
    zip_path.write_bytes(_rezip(zip_path.read_bytes(), replace={"evaluations/runs.json": runs}))
    done = _run(str(zip_path), "--public-key", str(key_path))
    assert done.returncode == 1
    assert "altered: evaluations/runs.json" in done.stdout
    assert "dossier intact" not in done.stdout
    assert done.stdout.count("altered:") == 1


def test_one_flipped_byte_in_the_zip_names_the_file(exported):
    """GIVEN the ZIP's own bytes WHEN one byte inside an entry's stored data flips THEN the
    verifier names that entry (a corrupt entry reads as altered)."""
    _, zip_path, key_path = exported
    data = bytearray(zip_path.read_bytes())
    name = "incidents.json"
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        info = archive.getinfo(name)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0x01
    zip_path.write_bytes(bytes(data))
    done = _run(str(zip_path), "--public-key", str(key_path))
    assert done.returncode == 1
    assert f"altered: {name}" in done.stdout


def test_a_wrong_public_key_fails_the_signatures(exported, tmp_path):
    _, zip_path, _ = exported
    other = tmp_path / "other.pem"
    other.write_text(public_pem(new_private_key()))
    done = _run(str(zip_path), "--public-key", str(other))
    assert done.returncode == 1
    assert "manifest signature invalid" in done.stdout
    assert "checkpoint signature invalid" in done.stdout
    assert "differs from the trusted key" in done.stdout


def test_missing_and_extra_files_are_named(exported):
    _, zip_path, key_path = exported
    zip_path.write_bytes(
        _rezip(zip_path.read_bytes(), drop={"incidents.json"}, add={"notes/extra.txt": b"hi"})
    )
    done = _run(str(zip_path), "--public-key", str(key_path))
    assert done.returncode == 1
    assert "missing: incidents.json" in done.stdout
    assert "not in the manifest: notes/extra.txt" in done.stdout


def test_a_manifest_rewritten_to_match_fails_its_signature(exported):
    """GIVEN an altered file WHEN its new hash is written into the manifest THEN the manifest
    no longer matches its signature."""
    dossier, zip_path, key_path = exported
    manifest = json.loads(dossier.manifest)
    body = b"[]\n"
    manifest["files"]["incidents.json"] = hashlib.sha256(body).hexdigest()
    rewritten = json.dumps(manifest, sort_keys=True, indent=2).encode() + b"\n"
    zip_path.write_bytes(
        _rezip(zip_path.read_bytes(), replace={"incidents.json": body, "manifest.json": rewritten})
    )
    done = _run(str(zip_path), "--public-key", str(key_path))
    assert done.returncode == 1
    assert "manifest signature invalid" in done.stdout
    assert "altered:" not in done.stdout


def test_a_forged_checkpoint_fails_even_in_a_validly_signed_manifest(exported):
    """GIVEN a manifest signed with the trusted key WHEN its checkpoint names another head
    THEN the checkpoint's own signature fails."""
    dossier, zip_path, key_path = exported
    manifest = json.loads(dossier.manifest)
    manifest["checkpoint"]["head_hash"] = "f" * 64
    forged = json.dumps(manifest, sort_keys=True, indent=2).encode() + b"\n"
    signature = (signing.sign(forged) + "\n").encode()
    zip_path.write_bytes(
        _rezip(zip_path.read_bytes(), replace={"manifest.json": forged, "manifest.sig": signature})
    )
    done = _run(str(zip_path), "--public-key", str(key_path))
    assert done.returncode == 1
    assert "checkpoint signature invalid" in done.stdout
    assert "manifest signature invalid" not in done.stdout


def test_not_a_zip_and_not_a_key(tmp_path, signing_key):  # noqa: F811
    bogus = tmp_path / "bogus.zip"
    bogus.write_bytes(b"not a zip")
    key = tmp_path / "key.pem"
    key.write_text(public_pem(signing_key))
    report = verify_dossier.verify(bogus.read_bytes(), key.read_text())
    assert report.problems == ["not a ZIP file"]
    bad_key = tmp_path / "bad.pem"
    bad_key.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    done = _run(str(bogus), "--public-key", str(bad_key))
    assert done.returncode == 1
    assert "not an Ed25519 public key" in done.stdout


def test_rotated_keys_can_be_given_together(exported, tmp_path):
    _, zip_path, key_path = exported
    older = tmp_path / "older.pem"
    older.write_text(public_pem(new_private_key()))
    done = _run(str(zip_path), "--public-key", str(older), "--public-key", str(key_path))
    assert done.returncode == 0, done.stdout
    assert "dossier intact" in done.stdout


def test_a_key_file_with_several_pem_blocks(exported, tmp_path):
    """GIVEN the portal's /audit/public-key.pem after a rotation (old and current keys in one
    file) WHEN it is the trusted key THEN the dossier verifies."""
    _, zip_path, key_path = exported
    both = tmp_path / "both.pem"
    both.write_text(public_pem(new_private_key()) + key_path.read_text())
    done = _run(str(zip_path), "--public-key", str(both))
    assert done.returncode == 0, done.stdout
    assert "dossier intact" in done.stdout

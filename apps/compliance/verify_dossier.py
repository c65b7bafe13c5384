"""The standalone verifier of a release's compliance dossier (no Django, no database).

    python -m apps.compliance.verify_dossier DOSSIER.zip --public-key KEY.pem [--json]

It needs only the standard library, ``cryptography`` and ``apps.audit.ed25519`` (which imports
no Django), so an auditor can run it on any machine with a copy of this module and its key.
``KEY.pem`` is the trusted public key, obtained separately from the portal
(``/audit/public-key.pem``, ``GET /api/v1/audit/public-key/`` or ``manage.py audit_checkpoint
--public-key``); the dossier's own ``public-key.pem`` is a convenience: the verifier says when
it differs from the trusted one.

Checks, each named in the report when it fails:
- ``manifest.sig`` is a valid Ed25519 signature of the exact bytes of ``manifest.json``;
- every file listed in the manifest is in the ZIP and its sha256 matches ("altered: NAME");
- no file is in the ZIP that the manifest does not list;
- the audit checkpoint the dossier is anchored to carries a valid signature.

Prints ``dossier intact`` and exits 0, or prints the problems and exits 1 (2 for bad usage).
"""

from __future__ import annotations

import argparse
import binascii
import hashlib
import io
import json
import re
import sys
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from apps.audit.ed25519 import (
    checkpoint_payload,
    key_id_for,
    load_public_key,
    verify_signature,
)

FORMAT = "plm-dossier/v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public-key.pem"
# The two files the manifest cannot list: itself and its signature.
UNLISTED = frozenset({MANIFEST, SIGNATURE})
_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.DOTALL)


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files_checked: int = 0
    release: dict | None = None
    checkpoint: dict | None = None
    generated_at: str | None = None

    @property
    def intact(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {
            "intact": self.intact,
            "problems": self.problems,
            "notes": self.notes,
            "files_checked": self.files_checked,
            "release": self.release,
            "generated_at": self.generated_at,
            "checkpoint": self.checkpoint,
        }


def _normalised_pem(pem: str) -> str:
    return "".join(line.strip() for line in pem.strip().splitlines())


def pem_blocks(text: str) -> list[str]:
    """The PEM blocks of a key file (the portal's ``/audit/public-key.pem`` may list the
    current key and the previous ones); the text itself when it holds none."""
    blocks = _PEM_BLOCK.findall(text)
    return blocks or [text]


def public_key_problem(public_key_pem: str) -> str | None:
    """Why ``public_key_pem`` is not a usable Ed25519 public key, or None."""
    try:
        load_public_key(public_key_pem)
    except (ValueError, TypeError) as exc:
        return f"the public key is not an Ed25519 public key in PEM ({exc})"
    return None


def _signature_ok(public_key_pem: str, data: bytes, signature_b64: str) -> bool:
    try:
        return bool(verify_signature(public_key_pem, data, signature_b64))
    except (ValueError, TypeError, binascii.Error):
        return False


def _signed_by_any(keys: list[str], data: bytes, signature_b64: str) -> bool:
    return any(_signature_ok(pem, data, signature_b64) for pem in keys)


def _checkpoint_keys(keys: list[str], key_id: str) -> list[str]:
    """The trusted keys whose id is the checkpoint's key id (all of them if none matches)."""
    matching = []
    for pem in keys:
        try:
            if key_id_for(pem) == key_id:
                matching.append(pem)
        except ValueError:
            continue
    return matching or keys


def _check_checkpoint(report: Report, checkpoint, key_id, keys: list[str]) -> None:
    if checkpoint is None:
        report.notes.append(
            "the dossier is not anchored to an audit checkpoint (none existed when it was made)"
        )
        return
    if not isinstance(checkpoint, dict):
        report.problems.append("manifest: checkpoint is not an object")
        return
    missing = [k for k in ("seq", "head_hash", "at", "key_id", "signature") if k not in checkpoint]
    if missing:
        report.problems.append(f"manifest: checkpoint lacks {', '.join(missing)}")
        return
    report.checkpoint = {k: checkpoint[k] for k in ("seq", "head_hash", "at", "key_id")}
    if key_id and checkpoint["key_id"] != key_id:
        report.notes.append(
            f"the checkpoint was signed by key {checkpoint['key_id']}, the manifest by {key_id}"
        )
    try:
        payload = checkpoint_payload(
            checkpoint["seq"], checkpoint["head_hash"], checkpoint["at"], checkpoint["key_id"]
        )
    except (ValueError, TypeError) as exc:
        report.problems.append(f"checkpoint: cannot rebuild its signed payload ({exc})")
        return
    signers = _checkpoint_keys(keys, str(checkpoint["key_id"]))
    if not _signed_by_any(signers, payload, str(checkpoint["signature"])):
        report.problems.append(
            f"checkpoint signature invalid: audit checkpoint #{checkpoint['seq']} "
            "was not signed by the trusted key"
        )


def _read(archive: zipfile.ZipFile, name: str) -> bytes | None:
    """An entry's bytes, or None when the entry cannot be read back (bad CRC, bad deflate)."""
    try:
        return archive.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError):
        return None


def verify(data: bytes, public_keys: str | list[str]) -> Report:
    """Check a dossier's bytes against the trusted public key(s) (PEM text; more than one when
    the portal's signing key was rotated: the current one and the previous ones)."""
    keys = [public_keys] if isinstance(public_keys, str) else list(public_keys)
    report = Report()
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        report.problems.append("not a ZIP file")
        return report
    with archive:
        names = [info.filename for info in archive.infolist() if not info.is_dir()]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        for name in duplicates:
            report.problems.append(f"duplicate entry in the ZIP: {name}")
        present = set(names)
        if MANIFEST not in present:
            report.problems.append(f"missing: {MANIFEST}")
            return report
        manifest_bytes = _read(archive, MANIFEST)
        if manifest_bytes is None:
            report.problems.append(f"altered: {MANIFEST} (its ZIP entry is corrupt)")
            return report
        if SIGNATURE not in present:
            report.problems.append(f"missing: {SIGNATURE}")
        else:
            signature = (_read(archive, SIGNATURE) or b"").decode("ascii", "replace").strip()
            if not _signed_by_any(keys, manifest_bytes, signature):
                report.problems.append(
                    "manifest signature invalid: manifest.json was not signed by the trusted "
                    "key, or it was altered"
                )
        try:
            manifest = json.loads(manifest_bytes)
        except (ValueError, UnicodeDecodeError):
            report.problems.append("manifest.json is not valid JSON")
            return report
        if not isinstance(manifest, dict):
            report.problems.append("manifest.json is not an object")
            return report
        if manifest.get("format") != FORMAT:
            report.problems.append(
                f"manifest: unknown format {manifest.get('format')!r} (expected {FORMAT})"
            )
        report.release = manifest.get("release")
        report.generated_at = manifest.get("generated_at")
        files = manifest.get("files")
        if not isinstance(files, dict):
            report.problems.append("manifest: files is not an object")
            return report
        for name in sorted(files):
            if name not in present:
                report.problems.append(f"missing: {name}")
                continue
            data = _read(archive, name)
            report.files_checked += 1
            if data is None:
                report.problems.append(f"altered: {name} (its ZIP entry is corrupt)")
            elif hashlib.sha256(data).hexdigest() != files[name]:
                report.problems.append(f"altered: {name}")
        for name in sorted(present - set(files) - UNLISTED):
            report.problems.append(f"not in the manifest: {name}")
        if PUBLIC_KEY in present:
            included = (_read(archive, PUBLIC_KEY) or b"").decode("ascii", "replace")
            trusted = {_normalised_pem(pem) for pem in keys}
            if _normalised_pem(included) not in trusted:
                report.notes.append(
                    f"the {PUBLIC_KEY} included in the dossier differs from the trusted key"
                )
        _check_checkpoint(report, manifest.get("checkpoint"), manifest.get("key_id"), keys)
    return report


def _print_text(report: Report, out) -> None:
    release = report.release or {}
    if release:
        out.write(
            f"release {release.get('product', '?')} {release.get('version', '?')} "
            f"(fingerprint {str(release.get('fingerprint', '?'))[:12]}), "
            f"generated {report.generated_at}\n"
        )
    if report.checkpoint:
        out.write(
            f"anchored to audit checkpoint #{report.checkpoint['seq']} "
            f"(head {str(report.checkpoint['head_hash'])[:12]}, {report.checkpoint['at']})\n"
        )
    for note in report.notes:
        out.write(f"note: {note}\n")
    if report.intact:
        out.write(f"dossier intact ({report.files_checked} files checked)\n")
    else:
        for problem in report.problems:
            out.write(f"{problem}\n")
        out.write(f"dossier NOT intact: {len(report.problems)} problem(s)\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m apps.compliance.verify_dossier",
        description="Verify a release's compliance dossier against a trusted public key.",
    )
    parser.add_argument("dossier", help="the dossier ZIP file")
    parser.add_argument(
        "--public-key",
        required=True,
        action="append",
        help="the trusted Ed25519 public key (PEM file); repeat it to trust the previous keys "
        "of a rotated signing key too",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        data = Path(args.dossier).read_bytes()
        texts = [Path(path).read_text(encoding="ascii") for path in args.public_key]
    except (OSError, UnicodeDecodeError) as exc:
        parser.error(str(exc))
    keys = [pem for text in texts for pem in pem_blocks(text)]
    problems = [p for p in (public_key_problem(pem) for pem in keys) if p]
    report = Report(problems=problems) if problems else verify(data, keys)
    if args.json:
        sys.stdout.write(json.dumps(report.as_dict(), indent=2, sort_keys=True) + "\n")
    else:
        _print_text(report, sys.stdout)
    return 0 if report.intact else 1


if __name__ == "__main__":
    sys.exit(main())

"""``dossier_build``: a release's signed compliance dossier, and its ZIP.

The manifest lists the sha256 of every file and the latest audit checkpoint (which anchors
the dossier in the hash-chained audit trail); ``manifest.sig`` is the portal's Ed25519
signature over the manifest's exact bytes. Each export is recorded as an audit event
``release.dossier_exported``.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone

from apps.accounts.models import User
from apps.audit.services import audit_record
from apps.releases.models import Release

from .collect import DossierContent, dossier_collect
from .render import dossier_files, json_bytes

FORMAT = "plm-dossier/v1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "public-key.pem"
# Every entry of the ZIP has this timestamp, so that two exports differ only in the manifest.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def dossier_filename(release: Release) -> str:
    """``dossier-<product>-<version>.zip`` (characters unsafe in a file name become ``_``)."""
    product, version = _UNSAFE.sub("_", release.product.slug), _UNSAFE.sub("_", release.version)
    return f"dossier-{product}-{version}.zip"


@dataclass(frozen=True)
class Dossier:
    release: Release
    generated_at: datetime
    generated_by: str
    files: dict[str, bytes]  # every file of the ZIP, manifest and signature included

    @property
    def filename(self) -> str:
        return dossier_filename(self.release)

    @property
    def manifest(self) -> bytes:
        return self.files[MANIFEST]

    def as_response(self) -> HttpResponse:
        """The ZIP as a download: ``attachment; filename="dossier-<product>-<version>.zip"``."""
        response = HttpResponse(self.to_zip(), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{self.filename}"'
        response["Cache-Control"] = "no-store"
        return response

    def to_zip(self) -> bytes:
        """The ZIP: fixed entry timestamps and order, so the same files give the same bytes."""
        first = [MANIFEST, SIGNATURE, PUBLIC_KEY, "README.txt"]
        names = [n for n in first if n in self.files]
        names += sorted(n for n in self.files if n not in first)
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name in names:
                info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.create_system = 3
                info.external_attr = 0o644 << 16
                archive.writestr(info, self.files[name])
        return buffer.getvalue()


def file_hashes(files: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())}


def manifest_for(
    content: DossierContent,
    files: dict[str, bytes],
    *,
    generated_at: datetime,
    generated_by: str,
    key_id: str,
) -> bytes:
    release = content.release
    return json_bytes(
        {
            "format": FORMAT,
            "release": {
                "id": str(release.pk),
                "version": release.version,
                "fingerprint": release.fingerprint,
                "status": release.status,
                "product": release.product.slug,
                "product_id": str(release.product_id),
            },
            "generated_at": generated_at,
            "generated_by": generated_by,
            "files": file_hashes(files),
            "checkpoint": content.checkpoint,
            "key_id": key_id,
        }
    )


def dossier_build(*, actor: User, release: Release) -> Dossier:
    """Export ``release``'s compliance dossier, signed, and record the export.

    The caller has checked that ``actor`` may read the release (the views look it up through
    ``releases.selectors.release_list_for``: out of scope is a 404)."""
    from apps.audit import signing

    content = dossier_collect(release=release)
    release = content.release
    files = dossier_files(content, zip_name=dossier_filename(release))
    files[PUBLIC_KEY] = signing.public_key_pem().encode("ascii")
    generated_at = timezone.now().replace(microsecond=0)
    generated_by = actor.get_username() if actor is not None else "system"
    key_id = signing.key_id()
    manifest = manifest_for(
        content, files, generated_at=generated_at, generated_by=generated_by, key_id=key_id
    )
    signature = signing.sign(manifest)
    dossier = Dossier(
        release=release,
        generated_at=generated_at,
        generated_by=generated_by,
        files={MANIFEST: manifest, SIGNATURE: (signature + "\n").encode("ascii"), **files},
    )
    with transaction.atomic():
        audit_record(
            actor=actor,
            verb="release.dossier_exported",
            obj=release,
            product_id=release.product_id,
            after={
                "format": FORMAT,
                "manifest_sha256": hashlib.sha256(manifest).hexdigest(),
                "files": len(files),
                "generated_at": generated_at,
                "key_id": key_id,
                "checkpoint_seq": (content.checkpoint or {}).get("seq"),
            },
        )
    return dossier

"""The Ed25519 key that signs audit checkpoints, kept outside the database.

Where the private key comes from, first match wins:

1. ``AUDIT_SIGNING_KEY`` (environment): the 32-byte raw private key in base64, or a PEM
   (PKCS#8, unencrypted; ``\\n`` escapes are accepted for one-line environment values).
2. ``AUDIT_SIGNING_KEY_FILE`` (default ``PLM_DATA_DIR/audit-signing-key.pem``): a PEM file.
   When the file does not exist it is generated on first use with mode 0600.

The key is never stored in the database and never logged. Checkpoints name the key that
signed them by ``key_id()`` (sha256 of the public key, 16 hex digits). After a rotation the
previous public keys go in ``AUDIT_PUBLIC_KEYS_EXTRA`` so older checkpoints stay verifiable.
"""

import base64
import binascii
import logging
import os
import re
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import ed25519

logger = logging.getLogger(__name__)

KEY_FILE_NAME = "audit-signing-key.pem"
_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z ]+-----.+?-----END [A-Z ]+-----", re.DOTALL)


def _unescape(text: str) -> str:
    return text.strip().replace("\\n", "\n")


def _parse_private(text: str, source: str) -> Ed25519PrivateKey:
    text = _unescape(text)
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            padded = (text + "=" * (-len(text) % 4)).encode()
            altchars = b"-_" if b"-" in padded or b"_" in padded else None
            raw = base64.b64decode(padded, altchars=altchars, validate=True)
            key = Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, TypeError, binascii.Error):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        # The message names where the key came from, never its content.
        raise ImproperlyConfigured(
            f"{source} is not an Ed25519 private key: give the 32 raw bytes in base64 or a "
            "PEM (PKCS#8); make one with `manage.py audit_checkpoint --generate-key`."
        )
    return key


def private_key_pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _key_file() -> Path:
    configured = getattr(settings, "AUDIT_SIGNING_KEY_FILE", "") or ""
    return Path(configured) if configured else settings.DATA_DIR / KEY_FILE_NAME


def _generate_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(private_key_pem(Ed25519PrivateKey.generate()))
    logger.info("audit checkpoints: generated a new signing key file %s (mode 0600)", path)


@lru_cache(maxsize=8)
def _load(env_value: str, path: str) -> Ed25519PrivateKey:
    if env_value.strip():
        return _parse_private(env_value, "AUDIT_SIGNING_KEY")
    file = Path(path)
    if not file.exists():
        _generate_file(file)
    if file.stat().st_mode & 0o077:
        logger.warning(
            "audit checkpoints: the signing key file %s is readable by others; chmod 600 it", file
        )
    return _parse_private(file.read_text(), f"AUDIT_SIGNING_KEY_FILE ({file})")


def signing_key() -> Ed25519PrivateKey:
    """The private key checkpoints are signed with (see the module docstring)."""
    return _load(getattr(settings, "AUDIT_SIGNING_KEY", "") or "", str(_key_file()))


def public_key_pem() -> str:
    """The current public key, PEM (SubjectPublicKeyInfo)."""
    return ed25519.public_key_to_pem(signing_key().public_key())


def key_id() -> str:
    """The id of the current signing key (sha256 of its public key, 16 hex digits)."""
    return _key_id(signing_key())


@lru_cache(maxsize=8)
def _key_id(key: Ed25519PrivateKey) -> str:
    return ed25519.key_id_of(key.public_key())


def sign(data: bytes) -> str:
    """The Ed25519 signature of ``data`` under the current key, standard base64."""
    return base64.b64encode(signing_key().sign(data)).decode()


def extra_public_keys() -> list[str]:
    """The PEMs of ``AUDIT_PUBLIC_KEYS_EXTRA`` (rotated-out keys whose checkpoints remain)."""
    configured = getattr(settings, "AUDIT_PUBLIC_KEYS_EXTRA", []) or []
    if isinstance(configured, str):
        configured = [configured]
    pems: list[str] = []
    for item in configured:
        pems.extend(_PEM_BLOCK.findall(_unescape(item)))
    return pems


def public_keys() -> dict[str, str]:
    """Every public key a checkpoint may be signed with: ``{key_id: pem}``, current first."""
    keys = {key_id(): public_key_pem()}
    for pem in extra_public_keys():
        try:
            keys.setdefault(ed25519.key_id_for(pem), pem)
        except ValueError as exc:
            raise ImproperlyConfigured(
                "AUDIT_PUBLIC_KEYS_EXTRA holds a PEM that is not an Ed25519 public key."
            ) from exc
    return keys

"""Ed25519 checkpoint signatures, with no Django import.

A standalone verifier (the compliance dossier's ``python -m`` checker) imports this module
without a database or settings: it rebuilds a checkpoint's signed payload with
``checkpoint_payload`` and checks the signature against a public key with
``verify_signature``.

The signed payload of a checkpoint is five lines of UTF-8, joined by ``\\n``, no trailing
newline::

    plm-audit-checkpoint:v1
    <seq>            the sequence number of the last event it covers (decimal)
    <head_hash>      that event's hash (64 lowercase hex)
    <at>             when it was signed, ISO 8601 with offset (datetime.isoformat())
    <key_id>         the signing key's id (see ``key_id_for``)
"""

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

PAYLOAD_VERSION = "plm-audit-checkpoint:v1"
KEY_ID_LENGTH = 16


def checkpoint_payload(seq: int, head_hash: str, at_iso: str, key_id: str) -> bytes:
    """The exact bytes a checkpoint's signature covers."""
    return "\n".join([PAYLOAD_VERSION, str(int(seq)), head_hash, at_iso, key_id]).encode()


def load_public_key(public_key_pem: str) -> Ed25519PublicKey:
    """An Ed25519 public key from its PEM (SubjectPublicKeyInfo); ValueError otherwise."""
    key = serialization.load_pem_public_key(public_key_pem.strip().encode())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def public_key_raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_to_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id_of(key: Ed25519PublicKey) -> str:
    """A short name of a public key: the first 16 hex digits of sha256 over its 32 raw bytes."""
    return hashlib.sha256(public_key_raw(key)).hexdigest()[:KEY_ID_LENGTH]


def key_id_for(public_key_pem: str) -> str:
    """The key id of a public key given as PEM."""
    return key_id_of(load_public_key(public_key_pem))


def verify_signature(public_key_pem: str, data: bytes, signature_b64: str) -> bool:
    """Whether ``signature_b64`` (standard base64) is a valid signature of ``data``.

    False for a bad signature, a malformed signature or a malformed key; never raises.
    """
    try:
        key = load_public_key(public_key_pem)
        signature = base64.b64decode(signature_b64.encode(), validate=True)
        key.verify(signature, data)
    except (InvalidSignature, ValueError, TypeError, binascii.Error):
        return False
    return True


def verify_with_key(key: Ed25519PublicKey, data: bytes, signature_b64: str) -> bool:
    """``verify_signature`` with a loaded key (for checking many checkpoints)."""
    try:
        key.verify(base64.b64decode(signature_b64.encode(), validate=True), data)
    except (InvalidSignature, ValueError, TypeError, binascii.Error):
        return False
    return True

"""API keys: generated here, stored as sha256 plus a short public prefix, shown once.

A key reads ``plm_live_<prefix>_<secret>``: ``prefix`` (8 hex characters) is public and shown in
lists so a developer can tell keys apart; ``secret`` is 43 url-safe characters (256 bits). Keys
are high-entropy, so one SHA-256 is the right hash (a password hasher would cost ~100 ms a call).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_SCHEME = "plm_live"
PREFIX_LENGTH = 8


def key_generate() -> tuple[str, str]:
    """A new key and its public prefix."""
    prefix = secrets.token_hex(PREFIX_LENGTH // 2)
    return f"{KEY_SCHEME}_{prefix}_{secrets.token_urlsafe(32)}", prefix


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def key_prefix(key: str) -> str | None:
    """The prefix of a well-formed key, or None (a malformed key is refused without a lookup)."""
    head = f"{KEY_SCHEME}_"
    if not key.startswith(head) or len(key) < len(head) + PREFIX_LENGTH + 2:
        return None
    prefix = key[len(head) : len(head) + PREFIX_LENGTH]
    if key[len(head) + PREFIX_LENGTH] != "_" or not all(c in "0123456789abcdef" for c in prefix):
        return None
    return prefix


def hashes_match(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)

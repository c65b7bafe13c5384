"""Provider secrets, encrypted at rest with Fernet (MultiFernet, so keys can be rotated).

The keys come from ``settings.PLM_SECRET_KEYS`` (the environment variable of the same name:
comma-separated Fernet keys, newest first). When it is empty, the embedded set-up generates one
key into ``DATA_DIR/secret_keys`` (mode 0600) on first use and reads it from there afterwards.

Encrypting always uses the newest key; decrypting tries every key, so prepending a new key keeps
old tokens readable until ``manage.py rotate_secrets`` re-encrypts them under the new one.
"""

import os
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.core.exceptions import ApplicationError

KEY_FILE_NAME = "secret_keys"


def _generated_keys() -> list[str]:
    path = settings.DATA_DIR / KEY_FILE_NAME
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(Fernet.generate_key().decode() + "\n")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def keys() -> list[str]:
    """The Fernet keys in use, newest first."""
    configured = [key.strip() for key in getattr(settings, "PLM_SECRET_KEYS", []) if key.strip()]
    return configured or _generated_keys()


@lru_cache(maxsize=8)
def _multi(key_set: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in key_set])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "PLM_SECRET_KEYS holds a value that is not a Fernet key (32 url-safe base64 bytes); "
            "make one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'"
        ) from exc


def fernet() -> MultiFernet:
    return _multi(tuple(keys()))


def encrypt(text: str) -> str:
    """A Fernet token for ``text`` under the newest key."""
    return fernet().encrypt(text.encode()).decode()


def decrypt(token: str) -> str:
    """The clear text of ``token``, under whichever configured key made it."""
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise ApplicationError(
            "secret_unreadable",
            "A stored secret cannot be decrypted with the configured keys: keep the old key in "
            "PLM_SECRET_KEYS (after the new one) until rotate_secrets has run.",
        ) from None


def rotate(token: str) -> str:
    """``token`` re-encrypted under the newest key (same clear text)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise ApplicationError(
            "secret_unreadable",
            "A stored secret cannot be decrypted with the configured keys, so it cannot be "
            "rotated: add the key it was made with to PLM_SECRET_KEYS.",
        ) from None

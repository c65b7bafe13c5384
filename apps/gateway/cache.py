"""The gateway's response cache, driven by a release's cache policy.

Policy: ``{"mode": "off" | "exact", "ttl_seconds": N}`` (``None`` or ``{}`` means off).
``exact`` serves a stored response when the provider slug, provider model, rendered messages
and parameters are the same as before, for ``ttl_seconds``.

The key is ``sha256`` over the canonical JSON of exactly those four parts
(:func:`apps.core.hashing.content_hash`), so it holds no secret: API keys, provider secrets and
the caller's identity are never part of it, and passing anything else is refused. The store is
Django's default cache (Redis when ``REDIS_URL`` is set, the file cache otherwise; see
``settings.CACHES``). A cache that cannot be reached is a miss, never a failed call.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache

from apps.core.hashing import content_hash, to_jsonable

logger = logging.getLogger(__name__)

MODE_OFF = "off"
MODE_EXACT = "exact"
MODES = (MODE_OFF, MODE_EXACT)
DEFAULT_TTL_SECONDS = 300
KEY_PREFIX = "plm:gw:resp:v1:"

_FIELDS = ("provider_slug", "provider_model", "messages", "parameters")


@dataclass(frozen=True)
class CacheKeyParts:
    provider_slug: str
    provider_model: str
    messages: Sequence[Mapping[str, Any]]
    parameters: Mapping[str, Any]


KeyParts = CacheKeyParts | Mapping[str, Any] | Sequence[Any]


@dataclass(frozen=True)
class CachePolicy:
    mode: str
    ttl_seconds: int

    @property
    def enabled(self) -> bool:
        return self.mode == MODE_EXACT


def parse_policy(policy: Mapping[str, Any] | CachePolicy | None) -> CachePolicy:
    """A release's ``cache`` setting as a :class:`CachePolicy`; ``ValueError`` when malformed."""
    if isinstance(policy, CachePolicy):
        return policy
    if not policy:
        return CachePolicy(MODE_OFF, 0)
    mode = policy.get("mode", MODE_OFF)
    if mode not in MODES:
        raise ValueError(f"cache mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == MODE_OFF:
        return CachePolicy(MODE_OFF, 0)
    ttl = policy.get("ttl_seconds", DEFAULT_TTL_SECONDS)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
        raise ValueError(f"cache ttl_seconds must be a positive number, not {ttl!r}")
    return CachePolicy(mode, int(ttl) if float(ttl).is_integer() else ttl)


def _normalise(key_parts: KeyParts) -> dict[str, Any]:
    if isinstance(key_parts, CacheKeyParts):
        values = [getattr(key_parts, f) for f in _FIELDS]
    elif isinstance(key_parts, Mapping):
        extra = set(key_parts) - set(_FIELDS)
        missing = set(_FIELDS) - set(key_parts)
        if extra or missing:
            raise TypeError(
                f"cache key parts are exactly {', '.join(_FIELDS)}"
                + (f"; unexpected: {', '.join(sorted(extra))}" if extra else "")
                + (f"; missing: {', '.join(sorted(missing))}" if missing else "")
            )
        values = [key_parts[f] for f in _FIELDS]
    else:
        values = list(key_parts)
        if len(values) != len(_FIELDS):
            raise TypeError(f"cache key parts are exactly {', '.join(_FIELDS)}")
    return dict(zip(_FIELDS, values, strict=True))


def cache_key(key_parts: KeyParts) -> str:
    """``plm:gw:resp:v1:<sha256 of canonical JSON of the four parts>``."""
    return KEY_PREFIX + content_hash(_normalise(key_parts))


def cache_get(policy: Mapping[str, Any] | CachePolicy | None, key_parts: KeyParts) -> dict | None:
    """The stored response, or ``None`` (miss, mode off, or the cache unreachable)."""
    parsed = parse_policy(policy)
    if not parsed.enabled:
        return None
    key = cache_key(key_parts)
    try:
        value = cache.get(key)
    except Exception:  # a cache outage is a miss, not a failed call
        logger.warning("response cache unreachable on get", exc_info=True)
        return None
    return value if isinstance(value, dict) else None


def cache_set(
    policy: Mapping[str, Any] | CachePolicy | None, key_parts: KeyParts, response: Mapping
) -> None:
    """Store ``response`` (a JSON-able mapping) for the policy's TTL; mode off stores nothing."""
    parsed = parse_policy(policy)
    if not parsed.enabled:
        return
    key = cache_key(key_parts)
    value = to_jsonable(dict(response))
    try:
        cache.set(key, value, timeout=parsed.ttl_seconds)
    except Exception:
        logger.warning("response cache unreachable on set", exc_info=True)

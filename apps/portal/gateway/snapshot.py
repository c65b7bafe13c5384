"""The gateway's in-process snapshot: what a request needs to know, without SQL.

Three maps, filled on first use (one ``sync_to_async`` hop running a few queries) and kept until
the generation changes (``apps.portal.invalidation``):

- key hash → ``KeyFacts`` (the key's id, application, expiry, revocation and rotation grace as
  Unix times; checked against the clock on every request) or ``None`` for an unknown key (a
  bounded negative cache, so a flood of bad keys does not become a flood of queries);
- application id → ``AppFacts`` (per published API, its latest subscription with its state and
  plan limits; the models list);
- API slug → ``APIFacts`` (status, deprecation and sunset, and the resolved pipeline ``Target``
  of the release it serves: the pinned one, or the product's current released release) or
  ``None`` for an unknown slug.

A snapshot is tagged with the generation read *before* its rows were loaded, so a change that
commits during a load makes the next request reload rather than keep stale rows.
"""

from __future__ import annotations

import email.utils
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import close_old_connections, connection

from apps.gateway.breaker import redis_key as breaker_redis_key
from apps.gateway.pipeline import Target, resolve_target
from apps.releases.selectors import release_current

from ..models import APIKey, APIStatus, PublishedAPI, Subscription, SubscriptionState

logger = logging.getLogger(__name__)

NEGATIVE_KEYS_MAX = 10_000
SERVED_STATUSES = frozenset({APIStatus.PUBLISHED, APIStatus.DEPRECATED})


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


@dataclass(frozen=True, slots=True)
class KeyFacts:
    id: Any
    application_id: Any
    prefix: str
    expires_at: float
    revoked_at: float | None
    grace_ends_at: float | None

    def refusal(self, now: float) -> str | None:
        """Why the key does not work at ``now`` (Unix time), or None."""
        if self.revoked_at is not None and now >= self.revoked_at:
            return "This API key has been revoked."
        if self.grace_ends_at is not None and now >= self.grace_ends_at:
            return "This API key was rotated and its grace period has ended; use the new key."
        if now >= self.expires_at:
            return "This API key has expired."
        return None


@dataclass(frozen=True, slots=True)
class SubFacts:
    id: Any
    state: str
    api_id: Any
    plan_id: Any
    plan_slug: str
    requests_per_minute: int
    tokens_per_month: int | None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    slug: str
    created: int
    sunset_at: float | None


@dataclass(frozen=True, slots=True)
class AppFacts:
    id: Any
    subs: dict[Any, SubFacts]  # api id -> the subscription that counts
    models: tuple[ModelEntry, ...]  # what GET /v1/models lists (active, served APIs)


@dataclass(frozen=True, slots=True)
class APIFacts:
    id: Any
    slug: str
    status: str
    sunset_at: float | None
    release_id: Any
    target: Target | None
    # Deprecation (RFC 9745) and Sunset (RFC 8594) headers, ready to send.
    headers: tuple[tuple[bytes, bytes], ...] = ()
    # The Redis hash of the circuit breaker of the target's first model (read in the
    # rate-limit round trip), or None.
    breaker: str | None = None


@dataclass
class Snapshot:
    generation: Any = None  # None: never synchronised
    keys: dict[str, KeyFacts | None] = field(default_factory=dict)
    apps: dict[Any, AppFacts] = field(default_factory=dict)
    apis: dict[str, APIFacts | None] = field(default_factory=dict)

    def reset(self, generation: Any) -> None:
        self.generation = generation
        self.keys = {}
        self.apps = {}
        self.apis = {}

    def store(self, generation: Any, loaded: Loaded) -> None:
        """Keep what a load found, unless the snapshot moved on meanwhile."""
        if generation != self.generation:
            return
        if loaded.key_hash is not None:
            if loaded.key is None and len(self.keys) >= NEGATIVE_KEYS_MAX:
                self.keys = {h: k for h, k in self.keys.items() if k is not None}
            self.keys[loaded.key_hash] = loaded.key
        if loaded.app is not None:
            self.apps[loaded.app.id] = loaded.app
        if loaded.slug is not None:
            self.apis[loaded.slug] = loaded.api


@dataclass
class Loaded:
    key_hash: str | None = None
    key: KeyFacts | None = None
    app: AppFacts | None = None
    slug: str | None = None
    api: APIFacts | None = None


# ---- loading (sync: the database) -------------------------------------------------------------


def _key(key_hash: str) -> KeyFacts | None:
    row = (
        APIKey.objects.filter(key_hash=key_hash)
        .values("id", "application_id", "prefix", "expires_at", "revoked_at", "grace_ends_at")
        .first()
    )
    if row is None:
        return None
    return KeyFacts(
        id=row["id"],
        application_id=row["application_id"],
        prefix=row["prefix"],
        expires_at=row["expires_at"].timestamp(),
        revoked_at=_ts(row["revoked_at"]),
        grace_ends_at=_ts(row["grace_ends_at"]),
    )


def _app(application_id: Any) -> AppFacts:
    subs: dict[Any, SubFacts] = {}
    models: list[ModelEntry] = []
    # Newest first: an application's active subscription wins, else its latest one (which says
    # why the call is refused: pending, suspended, rejected, cancelled).
    rows = Subscription.objects.filter(application_id=application_id).select_related("plan", "api")
    for sub in rows.order_by("-created_at"):
        known = subs.get(sub.api_id)
        if known is not None and (
            known.state == SubscriptionState.ACTIVE or sub.state != SubscriptionState.ACTIVE
        ):
            continue
        subs[sub.api_id] = SubFacts(
            id=sub.id,
            state=sub.state,
            api_id=sub.api_id,
            plan_id=sub.plan_id,
            plan_slug=sub.plan.slug,
            requests_per_minute=int(sub.plan.requests_per_minute),
            tokens_per_month=sub.plan.tokens_per_month,
        )
    apis = {sub.api_id: sub.api for sub in rows}
    for api_id, sub in subs.items():
        api = apis[api_id]
        if sub.state == SubscriptionState.ACTIVE and api.status in SERVED_STATUSES:
            created = api.published_at or api.created_at
            models.append(ModelEntry(api.slug, int(created.timestamp()), _ts(api.sunset_at)))
    models.sort(key=lambda m: m.slug)
    return AppFacts(id=application_id, subs=subs, models=tuple(models))


def deprecation_headers(api: PublishedAPI) -> tuple[tuple[bytes, bytes], ...]:
    if api.status != APIStatus.DEPRECATED:
        return ()
    since = api.deprecated_at or api.updated_at
    headers = [(b"deprecation", f"@{int(since.timestamp())}".encode())]
    if api.sunset_at is not None:
        headers.append(
            (b"sunset", email.utils.format_datetime(api.sunset_at, usegmt=True).encode())
        )
    if api.successor_id is not None and api.successor is not None:
        headers.append(
            (b"link", f'</v1/models/{api.successor.slug}>; rel="successor-version"'.encode())
        )
    return tuple(headers)


def _api(slug: str) -> APIFacts | None:
    api = PublishedAPI.objects.filter(slug=slug).select_related("successor").first()
    if api is None:
        return None
    target = None
    release = None
    if api.status in SERVED_STATUSES:
        release = api.release if api.release_id else release_current(product=api.product)
        if release is not None:
            target = resolve_target(release=release)
    return APIFacts(
        id=api.id,
        slug=api.slug,
        status=api.status,
        sunset_at=_ts(api.sunset_at),
        release_id=release.pk if release is not None else None,
        target=target,
        headers=deprecation_headers(api),
        breaker=breaker_redis_key(target.legs[0].provider_slug, target.legs[0].provider_model)
        if target is not None and target.legs
        else None,
    )


def load(*, key_hash: str | None, application_id: Any = None, slug: str | None = None) -> Loaded:
    """Load what a request needs and the snapshot lacks (the cold path: a few queries)."""
    if not connection.in_atomic_block:  # (a test's transaction: keep it)
        close_old_connections()
    loaded = Loaded(key_hash=key_hash, slug=slug)
    if key_hash is not None:
        loaded.key = _key(key_hash)
        if loaded.key is not None and application_id is None:
            application_id = loaded.key.application_id
    if application_id is not None:
        loaded.app = _app(application_id)
    if slug is not None:
        loaded.api = _api(slug)
    return loaded

"""Bounded concurrency per provider, shared by every worker: a semaphore of expiring leases.

An evaluation run may have up to its ``concurrency`` calls in flight; many runs on many workers
may target the same provider. The provider's own limit (``max_concurrency`` in its ``config``,
default ``EVALUATIONS_PROVIDER_MAX_CONCURRENCY`` = 8) caps the calls in flight to it from all
of them together. A caller takes a *lease* before a call and gives it back after::

    limiter = Limiter.for_provider(provider)
    lease = await limiter.acquire()          # waits while the provider is at its limit
    try:
        ...                                   # the call
    finally:
        await limiter.release(lease)
    await limiter.aclose()                    # before the event loop ends

A lease expires after ``lease_seconds`` (the provider's ``concurrency_lease_seconds``, default
30) unless renewed: the limiter renews the leases it holds every third of that, so a long call
keeps its slot while a killed worker's slots come free within ``lease_seconds``.

Where the semaphore lives:

- With ``REDIS_URL`` set: one sorted set per provider (``plm:limiter:<slug>``) of lease ids
  scored by their expiry, changed by ONE Lua script (registered once per process per loop,
  run with EVALSHA): *acquire* drops expired leases then adds the lease only if fewer than the
  limit remain, *release* removes it, *renew* pushes the expiry of the leases still held. Time
  is the Redis server's clock, so the hosts need not agree on theirs. If Redis cannot be
  reached the limiter fails open (the call goes out, a warning is logged): a Redis outage is not
  an evaluation outage, and the provider's own 429s still go through the pipeline's retries.
- Without Redis (the embedded set-up, one host): a JSON file of leases per provider in
  ``DATA_DIR/limiter/``, read and rewritten under an exclusive ``flock``, so it is exact across
  the processes of that host (web, workers). It is the documented best effort for a single-host
  set-up: it does not span hosts, and where ``fcntl`` is missing (Windows) the lock is only
  per process.

Waiting is polling with a short, growing, jittered sleep (5 ms up to 100 ms): no fairness is
promised between waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import threading
import time
import uuid
import weakref
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings

from apps.core.hashing import sha256_hex

try:  # pragma: no cover - always there on the platforms we run on
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 8
DEFAULT_LEASE_SECONDS = 30.0
KEY_PREFIX = "plm:limiter:"
POLL_FIRST_SECONDS = 0.005
POLL_MAX_SECONDS = 0.1
FAIL_OPEN_LEASE = ""  # what acquire returns when the backend is down (release ignores it)

# KEYS[1] = the semaphore (a sorted set: lease id -> expiry in ms on the server's clock).
# ARGV[1] = op: "acquire" (ARGV[2] lease id, ARGV[3] limit, ARGV[4] ttl ms) -> 1 | 0;
# "release" (ARGV[2..] lease ids) -> removed; "renew" (ARGV[2] ttl ms, ARGV[3..] lease ids)
# -> renewed; "count" -> leases alive.
LUA_SCRIPT = """
local key = KEYS[1]
local op = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if op == 'acquire' then
  local id = ARGV[2]
  local limit = tonumber(ARGV[3])
  local ttl = tonumber(ARGV[4])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZSCORE', key, id) == false and redis.call('ZCARD', key) >= limit then
    return 0
  end
  redis.call('ZADD', key, now + ttl, id)
  redis.call('PEXPIRE', key, ttl * 2)
  return 1
end
if op == 'release' then
  local n = 0
  for i = 2, #ARGV do
    n = n + redis.call('ZREM', key, ARGV[i])
  end
  return n
end
if op == 'renew' then
  local ttl = tonumber(ARGV[2])
  local n = 0
  for i = 3, #ARGV do
    if redis.call('ZSCORE', key, ARGV[i]) then
      redis.call('ZADD', key, now + ttl, ARGV[i])
      n = n + 1
    end
  end
  redis.call('PEXPIRE', key, ttl * 2)
  return n
end
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
return redis.call('ZCARD', key)
"""


def default_limit() -> int:
    return max(1, int(getattr(settings, "EVALUATIONS_PROVIDER_MAX_CONCURRENCY", DEFAULT_LIMIT)))


def _positive(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if number > 0 else default


# --- Redis: one async client (and its registered script) per URL per event loop --------------

_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, tuple]] = (
    weakref.WeakKeyDictionary()
)
_sync_lock = threading.Lock()
_sync_clients: dict[str, tuple[redis.Redis, Any]] = {}


def _async_script(url: str):
    per_loop = _async_clients.setdefault(asyncio.get_running_loop(), {})
    entry = per_loop.get(url)
    if entry is None:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        entry = per_loop[url] = (client, client.register_script(LUA_SCRIPT))
    return entry[1]


def _sync_script(url: str):
    entry = _sync_clients.get(url)
    if entry is None:
        with _sync_lock:
            entry = _sync_clients.get(url)
            if entry is None:
                client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
                entry = _sync_clients[url] = (client, client.register_script(LUA_SCRIPT))
    return entry[1]


async def aclose_clients() -> None:
    """Close the running loop's Redis clients (before the loop ends)."""
    per_loop = _async_clients.pop(asyncio.get_running_loop(), None) or {}
    for client, _ in per_loop.values():
        with contextlib.suppress(Exception):
            await client.aclose()


# --- the file backend (no Redis) ---------------------------------------------------------------

_file_guard = threading.Lock()
_file_handles: dict[tuple[int, str], tuple[int, threading.Lock]] = {}


def _lock_dir() -> Path:
    path = Path(settings.DATA_DIR) / "limiter"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _file_handle(name: str) -> tuple[int, threading.Lock]:
    """This process's open descriptor of the semaphore's file, and a lock for its threads
    (``flock`` excludes other processes, not the threads of this one). Opened again after a fork:
    a descriptor shared with the parent would share its lock too."""
    path = str(_lock_dir() / f"{sha256_hex(name)[:32]}.json")
    key = (os.getpid(), path)
    entry = _file_handles.get(key)
    if entry is None:
        with _file_guard:
            entry = _file_handles.get(key)
            if entry is None:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
                entry = _file_handles[key] = (fd, threading.Lock())
    return entry


def _file_op(name: str, op: str, *, lease: str = "", limit: int = 0, ttl: float = 0, ids=()):
    """The Lua script's semantics on a JSON file under an exclusive lock (same host only).

    The file is rewritten in place and padded with spaces to its old length (JSON ignores them),
    so an operation is a lock, a read and a write: no truncation, no rename."""
    fd, thread_lock = _file_handle(name)
    with thread_lock:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            raw = os.pread(fd, size, 0) if size else b""
            try:
                leases = {str(k): float(v) for k, v in json.loads(raw or b"{}").items()}
            except (ValueError, AttributeError):
                leases = {}
            now = time.time()
            alive = {k: v for k, v in leases.items() if v > now}
            result: int
            if op == "acquire":
                if lease in alive or len(alive) < limit:
                    alive[lease] = now + ttl
                    result = 1
                else:
                    result = 0
            elif op == "release":
                result = sum(1 for i in ids if alive.pop(i, None) is not None)
            elif op == "renew":
                result = 0
                for i in ids:
                    if i in alive:
                        alive[i] = now + ttl
                        result += 1
            else:
                result = len(alive)
            if alive != leases:
                data = json.dumps(alive, separators=(",", ":")).encode()
                os.pwrite(fd, data.ljust(size, b" "), 0)
            return result
        finally:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)


# --- the limiter ---------------------------------------------------------------------------------


class Limiter:
    """A semaphore of ``limit`` slots named ``name``, shared by every process (see above)."""

    def __init__(
        self, name: str, limit: int, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.name = name
        self.key = KEY_PREFIX + name
        self.limit = int(limit)
        self.lease_seconds = float(lease_seconds)
        self._held: set[str] = set()
        self._renewer: asyncio.Task | None = None
        self._warned_at = 0.0

    def __repr__(self) -> str:
        return f"Limiter({self.name!r}, limit={self.limit})"

    @classmethod
    def for_provider(cls, provider) -> Limiter:
        """The limiter of a provider (by slug), with the limits of its ``config``."""
        config = (provider.config if provider is not None else None) or {}
        slug = provider.slug if provider is not None else "unknown"
        limit = config.get("max_concurrency", default_limit())
        try:
            limit = max(1, int(limit))
        except (TypeError, ValueError):
            limit = default_limit()
        lease = _positive(config.get("concurrency_lease_seconds"), DEFAULT_LEASE_SECONDS)
        return cls(f"provider:{slug}", limit, lease_seconds=lease)

    @property
    def _ttl_ms(self) -> int:
        return max(1, round(self.lease_seconds * 1000))

    def _fail_open(self, exc: Exception) -> str:
        now = time.monotonic()
        if now - self._warned_at > 10:
            self._warned_at = now
            logger.warning("limiter %s: Redis unreachable (%s), failing open", self.name, exc)
        return FAIL_OPEN_LEASE

    # -- one attempt --------------------------------------------------------------------------
    async def _try(self, lease: str) -> bool:
        url = settings.REDIS_URL
        if url:
            script = _async_script(url)
            return bool(
                await script(keys=[self.key], args=["acquire", lease, self.limit, self._ttl_ms])
            )
        return bool(
            _file_op(self.key, "acquire", lease=lease, limit=self.limit, ttl=self.lease_seconds)
        )

    def try_acquire(self) -> str | None:
        """A lease if a slot is free now, else None (sync; not renewed: release it soon)."""
        lease = uuid.uuid4().hex
        url = settings.REDIS_URL
        try:
            if url:
                ok = _sync_script(url)(
                    keys=[self.key], args=["acquire", lease, self.limit, self._ttl_ms]
                )
            else:
                ok = _file_op(
                    self.key, "acquire", lease=lease, limit=self.limit, ttl=self.lease_seconds
                )
        except redis.RedisError as exc:
            return self._fail_open(exc)
        return lease if ok else None

    def release_sync(self, lease: str | None) -> None:
        if not lease:
            return
        url = settings.REDIS_URL
        try:
            if url:
                _sync_script(url)(keys=[self.key], args=["release", lease])
            else:
                _file_op(self.key, "release", ids=[lease])
        except redis.RedisError as exc:
            self._fail_open(exc)

    def in_use(self) -> int:
        """Leases alive now, from every process."""
        url = settings.REDIS_URL
        if url:
            return int(_sync_script(url)(keys=[self.key], args=["count"]))
        return int(_file_op(self.key, "count"))

    # -- async API ----------------------------------------------------------------------------
    async def acquire(self, *, timeout: float | None = None) -> str:
        """Wait for a free slot and return its lease id (renewed until released).

        ``timeout``: give up after that many seconds with ``TimeoutError``."""
        lease = uuid.uuid4().hex
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = POLL_FIRST_SECONDS
        while True:
            try:
                got = await self._try(lease)
            except (redis.RedisError, OSError) as exc:
                return self._fail_open(exc)
            if got:
                self._held.add(lease)
                self._ensure_renewer()
                return lease
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no free slot of {self.name} within {timeout:g} s")
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311 (jitter)
            delay = min(POLL_MAX_SECONDS, delay * 1.5)

    async def release(self, lease: str | None) -> None:
        if not lease:
            return
        self._held.discard(lease)
        url = settings.REDIS_URL
        try:
            if url:
                await _async_script(url)(keys=[self.key], args=["release", lease])
            else:
                _file_op(self.key, "release", ids=[lease])
        except (redis.RedisError, OSError) as exc:
            self._fail_open(exc)

    async def renew(self) -> int:
        """Push the expiry of the leases this limiter holds; returns how many were alive."""
        held = list(self._held)
        if not held:
            return 0
        url = settings.REDIS_URL
        if url:
            script = _async_script(url)
            return int(await script(keys=[self.key], args=["renew", self._ttl_ms, *held]))
        return int(_file_op(self.key, "renew", ttl=self.lease_seconds, ids=held))

    def _ensure_renewer(self) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop())

    async def _renew_loop(self) -> None:
        interval = max(0.05, self.lease_seconds / 3)
        while self._held:
            await asyncio.sleep(interval)
            try:
                await self.renew()
            except (redis.RedisError, OSError) as exc:
                self._fail_open(exc)

    async def aclose(self) -> None:
        """Give back every lease still held and stop renewing (before the loop ends)."""
        held, self._held = list(self._held), set()
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        for lease in held:
            await self.release(lease)

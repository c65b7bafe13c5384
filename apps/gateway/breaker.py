"""A circuit breaker per (provider slug, provider model), shared by every process.

States: ``closed`` (calls go through) → ``open`` after ``failure_threshold`` consecutive
failures (calls are refused) → ``half_open`` once ``cooldown_seconds`` have passed, when exactly
one caller is let through as a probe → ``closed`` when the probe succeeds, ``open`` again (for a
fresh cool-down) when it fails. A probe that never reports back (its process died) holds the
half-open slot for one cool-down only; then another probe is let through.

Where the state lives:

- With ``REDIS_URL`` set: one Redis hash per breaker, read and changed by ONE Lua script
  (registered once per process, run with EVALSHA), so concurrent callers in any number of
  processes see one consistent state and only one of them gets the probe. Time comes from the
  Redis server's clock, so the web and worker hosts need not agree on theirs.
- Without Redis (the embedded set-up): Django's default cache (the file cache), read-modify-write
  without a cross-process lock. This is a documented best effort: inside one process a lock
  makes it exact; across processes two callers may both see a transition (for example both get a
  probe, or one failure is counted once instead of twice). That is acceptable for a single-host
  demo set-up; production runs with Redis.

If Redis cannot be reached the breaker fails open: ``allow()`` says yes and records are dropped
(logged), so a Redis outage never turns into a gateway outage.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache

from apps.core.hashing import sha256_hex

logger = logging.getLogger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOLDOWN_SECONDS = 30.0
# A breaker's record is kept at least this long after its last change (then a quiet breaker is
# simply closed again).
MIN_TTL_SECONDS = 24 * 3600

KEY_PREFIX = "plm:breaker:"

# KEYS[1] = the breaker's hash; ARGV = op ("allow" | "success" | "failure" | "state"),
# failure threshold, cool-down (ms), ttl (ms). Returns {allowed (0/1), state after the op}.
# Fields: state, failures, opened_at (ms), probe_at (ms). A missing hash is a closed breaker
# with no failures, so the common case (closed, success) writes nothing.
LUA_SCRIPT = """
local key = KEYS[1]
local op = ARGV[1]
local threshold = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', key, 'state', 'failures', 'opened_at', 'probe_at')
local state = h[1] or 'closed'
local failures = tonumber(h[2]) or 0
local opened_at = tonumber(h[3]) or 0
local probe_at = tonumber(h[4]) or 0

if op == 'allow' then
  if state == 'closed' then
    return {1, 'closed', failures}
  end
  if state == 'open' then
    if now - opened_at >= cooldown then
      redis.call('HSET', key, 'state', 'half_open', 'probe_at', now)
      redis.call('PEXPIRE', key, ttl)
      return {1, 'half_open'}
    end
    return {0, 'open'}
  end
  -- half_open: the probe is out; a lost probe frees the slot after one cool-down
  if now - probe_at >= cooldown then
    redis.call('HSET', key, 'probe_at', now)
    redis.call('PEXPIRE', key, ttl)
    return {1, 'half_open'}
  end
  return {0, 'half_open'}
end

if op == 'failure' then
  if state == 'closed' then
    failures = failures + 1
    if failures >= threshold then
      redis.call('HSET', key, 'state', 'open', 'failures', failures, 'opened_at', now)
      redis.call('PEXPIRE', key, ttl)
      return {0, 'open'}
    end
    redis.call('HSET', key, 'failures', failures)
    redis.call('PEXPIRE', key, ttl)
    return {1, 'closed'}
  end
  if state == 'half_open' then
    redis.call('HSET', key, 'state', 'open', 'opened_at', now)
    redis.call('PEXPIRE', key, ttl)
    return {0, 'open'}
  end
  return {0, 'open'}
end

if op == 'success' then
  if state == 'open' then
    -- a late answer to a call made before the breaker opened; the probe decides
    return {0, 'open'}
  end
  if state == 'half_open' or failures > 0 then
    redis.call('DEL', key)
  end
  return {1, 'closed'}
end

-- state: read only; an open breaker past its cool-down reads as half-open
if state == 'open' and now - opened_at >= cooldown then
  return {1, 'half_open'}
end
return {state == 'closed' and 1 or 0, state}
"""

_lock = threading.Lock()
_clients: dict[str, tuple[redis.Redis, Any]] = {}


def _redis_script(url: str) -> Any:
    """The process's one client for ``url`` and the script registered on it (EVALSHA)."""
    entry = _clients.get(url)
    if entry is None:
        with _lock:
            entry = _clients.get(url)
            if entry is None:
                client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
                entry = (client, client.register_script(LUA_SCRIPT))
                _clients[url] = entry
    return entry[1]


def breaker_key(provider_slug: str, provider_model: str) -> str:
    """The breaker name for one provider model (a slug never holds ``/``, a model name may)."""
    return f"{provider_slug}/{provider_model}"


def redis_key(provider_slug: str, provider_model: str) -> str:
    """The Redis hash of one provider model's breaker."""
    return KEY_PREFIX + breaker_key(provider_slug, provider_model)


# A read-only fragment for other Lua scripts: ``clean`` is 1 when the breaker whose hash is
# ``breaker_hash`` is closed with no failure counted (``allow_clean()`` would answer
# ``(True, True)`` and write nothing), else 0. The portal's gateway runs it inside its
# rate-limit script, so its hot path asks Redis once per call, not twice.
CLEAN_LUA = """
local b = redis.call('HMGET', breaker_hash, 'state', 'failures')
if (b[1] or 'closed') == 'closed' and (tonumber(b[2]) or 0) == 0 then
  clean = 1
end
"""


class Breaker:
    """``Breaker(key, failure_threshold, cooldown_seconds)``; ``key`` is a string (see
    :func:`breaker_key`) or a ``(provider slug, provider model)`` pair."""

    def __init__(
        self,
        key: str | tuple[str, str],
        failure_threshold: int = DEFAULT_FAILURE_THRESHOLD,
        cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS,
    ) -> None:
        if isinstance(key, tuple):
            key = breaker_key(*key)
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if cooldown_seconds <= 0:
            raise ValueError("cooldown_seconds must be positive")
        self.key = key
        self._last_failures = 0
        self.failure_threshold = int(failure_threshold)
        self.cooldown_seconds = float(cooldown_seconds)

    def __repr__(self) -> str:
        return f"Breaker({self.key!r}, {self.failure_threshold}, {self.cooldown_seconds})"

    # -- public API ---------------------------------------------------------------------------
    def allow(self) -> bool:
        """May a call go out now? In half-open state only one caller gets ``True`` (the probe)."""
        return self._run("allow")[0]

    def allow_clean(self) -> tuple[bool, bool]:
        """``allow()``, and whether the breaker is closed with no failure counted: then a
        success has nothing to reset and the caller may skip ``record_success`` (one round
        trip fewer on the hot path)."""
        allowed, state = self._run("allow")
        return allowed, state == CLOSED and not self._last_failures

    def record_success(self) -> None:
        self._run("success")

    def record_failure(self) -> None:
        self._run("failure")

    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` (an open breaker past its cool-down)."""
        return self._run("state")[1]

    # -- backends -----------------------------------------------------------------------------
    def _run(self, op: str) -> tuple[bool, str]:
        url = settings.REDIS_URL
        if not url:
            return self._run_cache(op)
        try:
            reply = _redis_script(url)(
                keys=[KEY_PREFIX + self.key],
                args=[op, self.failure_threshold, self._cooldown_ms, self._ttl_ms],
            )
        except redis.RedisError:
            logger.warning("circuit breaker %s: Redis unreachable, failing open", self.key)
            return True, CLOSED
        allowed, state = reply[0], reply[1]
        self._last_failures = int(reply[2]) if len(reply) > 2 else 0
        state = state.decode() if isinstance(state, bytes) else state
        return bool(allowed), state

    @property
    def _cooldown_ms(self) -> int:
        return max(1, round(self.cooldown_seconds * 1000))

    @property
    def _ttl_ms(self) -> int:
        return max(MIN_TTL_SECONDS * 1000, self._cooldown_ms * 10)

    def _run_cache(self, op: str) -> tuple[bool, str]:
        """Best effort on Django's cache: exact within this process, racy across processes."""
        cache_key = KEY_PREFIX + sha256_hex(self.key)
        cooldown = self.cooldown_seconds
        with _lock:
            now = time.time()
            record = cache.get(cache_key) or {}
            state = record.get("state", CLOSED)
            failures = record.get("failures", 0)
            opened_at = record.get("opened_at", 0.0)
            probe_at = record.get("probe_at", 0.0)
            new: dict[str, Any] | None = None  # None: leave the record alone
            delete = False

            self._last_failures = failures
            if op == "allow":
                if state == CLOSED:
                    result = (True, CLOSED)
                elif state == OPEN:
                    if now - opened_at >= cooldown:
                        new = {**record, "state": HALF_OPEN, "probe_at": now}
                        result = (True, HALF_OPEN)
                    else:
                        result = (False, OPEN)
                elif now - probe_at >= cooldown:
                    new = {**record, "probe_at": now}
                    result = (True, HALF_OPEN)
                else:
                    result = (False, HALF_OPEN)
            elif op == "failure":
                if state == CLOSED:
                    failures += 1
                    if failures >= self.failure_threshold:
                        new = {"state": OPEN, "failures": failures, "opened_at": now}
                        result = (False, OPEN)
                    else:
                        new = {"state": CLOSED, "failures": failures}
                        result = (True, CLOSED)
                elif state == HALF_OPEN:
                    new = {**record, "state": OPEN, "opened_at": now}
                    result = (False, OPEN)
                else:
                    result = (False, OPEN)
            elif op == "success":
                if state == OPEN:
                    result = (False, OPEN)
                else:
                    delete = state == HALF_OPEN or failures > 0
                    result = (True, CLOSED)
            elif state == OPEN and now - opened_at >= cooldown:
                result = (True, HALF_OPEN)
            else:
                result = (state == CLOSED, state)

            if delete:
                cache.delete(cache_key)
            elif new is not None:
                cache.set(cache_key, new, timeout=self._ttl_ms / 1000)
        return result

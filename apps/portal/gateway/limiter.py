"""Rate limits per subscription: requests per minute and tokens per month, atomic across processes.

Two backends, chosen once per process (``GATEWAY_LIMITER`` setting or ``PLM_GATEWAY_LIMITER``
environment variable: ``redis``, ``db`` or ``auto`` — Redis when ``REDIS_URL`` is set):

**Redis** — ONE Lua script per request (registered once per event loop's client, run with
EVALSHA), which atomically

- refills and takes from a **token bucket** of capacity ``requests_per_minute``, refilled
  continuously at ``requests_per_minute / 60`` per second (so a burst of up to the whole
  minute's allowance is served at once, then one request every ``60 / rpm`` seconds); time is
  the Redis server's clock (``TIME``), so the gateway hosts need not agree on theirs;
- checks the subscription's token counter of the current month (UTC) against
  ``tokens_per_month``: once used >= quota, calls are refused (``insufficient_quota``) until
  the month ends. The gateway adds each call's tokens (``INCRBY``) after the call finished, off
  the response path, so calls already in flight when the quota is reached may overshoot it;
- returns the invalidation generation (``apps.portal.invalidation``), so the snapshot check
  shares the round trip;
- reads (never writes) the circuit breaker of the API's first model (``apps.gateway.breaker``,
  ``CLEAN_LUA``): when it is closed with no failure counted, the pipeline is told so
  (``breaker_checked``) and does not ask Redis again — one round trip per call, not two.

The tokens a call used are added with one more script (``INCRBY`` + ``EXPIRE``), after the
response went out.

**Database** (embedded set-up, or ``db`` forced) — ``LimitCounter`` rows changed by atomic
conditional UPDATEs (SQLite and PostgreSQL): a **fixed window** per calendar minute (UTC, by
the gateway host's clock): ``UPDATE … SET value = value + 1 WHERE key = ? AND window = ? AND
value < rpm`` takes one request (the row is the lock, so concurrent processes never over-grant);
a new minute resets the row with one conditional UPDATE, a new subscription inserts it (``ON
CONFLICT DO NOTHING``, then retries). At most ``rpm`` requests are granted per calendar minute;
across a minute boundary up to ``2 x rpm`` may arrive within a few seconds. The monthly token
counter is a row per subscription whose window is the month (``YYYYMM``), read before the call
and incremented after it.

Both fail open: if Redis or the database cannot be reached, the request is let through (logged),
so a limiter outage never turns into a gateway outage.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import math
import os
import time
import weakref
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection

from apps.gateway.breaker import CLEAN_LUA

from ..invalidation import REDIS_KEY as GENERATION_KEY
from ..models import LimitCounter

logger = logging.getLogger(__name__)

BUCKET_PREFIX = "plm:gateway:rpm:"
TOKENS_PREFIX = "plm:gateway:tokens:"
TOKENS_TTL_SECONDS = 40 * 24 * 3600

# KEYS[1] the bucket hash (tokens, ts), KEYS[2] the month's token counter, KEYS[3] the generation,
# KEYS[4] (optional) the circuit breaker hash of the API's first model (read only).
# ARGV[1] capacity (requests per minute), ARGV[2] the monthly token quota (-1: none).
# Returns {allowed 0/1, reason ('' | 'requests' | 'tokens'), whole requests left, ms until the
# next request is available, ms until the bucket is full, tokens used this month, generation,
# breaker closed with no failure counted 0/1}.
LUA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[1])
local quota = tonumber(ARGV[2])
local rate = cap / 60000.0
local h = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(h[1])
local ts = tonumber(h[2])
if tokens == nil or ts == nil then
  tokens = cap
  ts = now
end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local used = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local gen = redis.call('GET', KEYS[3]) or '0'
local allowed = 0
local reason = ''
if quota >= 0 and used >= quota then
  reason = 'tokens'
elseif tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
else
  reason = 'requests'
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], 61000)
local wait = 0
if tokens < 1 then
  wait = math.ceil((1 - tokens) / rate)
end
local full = math.ceil((cap - tokens) / rate)
local clean = 0
if allowed == 1 and KEYS[4] then
  local breaker_hash = KEYS[4]
{CLEAN}end
return {allowed, reason, math.floor(tokens), wait, full, used, gen, clean}
""".replace("{CLEAN}", CLEAN_LUA)
# KEYS[1] the month's token counter; ARGV[1] tokens, ARGV[2] its time to live (s).
TOKENS_SCRIPT = """
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return used
"""


@dataclass(slots=True)
class Decision:
    allowed: bool
    reason: str  # "" | "requests" | "tokens"
    limit_requests: int
    remaining_requests: int
    reset_requests: float  # seconds until the request allowance is whole again
    retry_after: float  # seconds until a refused call may succeed
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens: float | None = None  # seconds until the month's quota starts afresh
    generation: Any = None  # the invalidation generation, when the backend read it
    # The breaker asked about was closed with no failure counted (Redis only; else False).
    breaker_clean: bool = False

    def headers(self) -> list[tuple[bytes, bytes]]:
        """OpenAI's ``x-ratelimit-*`` headers (token ones only when the plan has a quota)."""
        out = [
            (b"x-ratelimit-limit-requests", str(self.limit_requests).encode()),
            (b"x-ratelimit-remaining-requests", str(max(0, self.remaining_requests)).encode()),
            (b"x-ratelimit-reset-requests", duration(self.reset_requests).encode()),
        ]
        if self.limit_tokens is not None:
            out += [
                (b"x-ratelimit-limit-tokens", str(self.limit_tokens).encode()),
                (b"x-ratelimit-remaining-tokens", str(max(0, self.remaining_tokens or 0)).encode()),
                (b"x-ratelimit-reset-tokens", duration(self.reset_tokens or 0).encode()),
            ]
        if not self.allowed:
            out.append((b"retry-after", str(max(1, math.ceil(self.retry_after))).encode()))
        return out


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``20ms``, ``1.5s``, ``6m0s``, ``3h2m1s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    whole = math.ceil(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes}m{secs}s" if hours else f"{minutes}m{secs}s"


def month_window(now: float) -> tuple[int, float]:
    """The month (``YYYYMM``, UTC) of ``now`` and the seconds until the next one starts."""
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    start_next = calendar.timegm((year, month, 1, 0, 0, 0))
    return t.tm_year * 100 + t.tm_mon, start_next - now


def backend_name() -> str:
    choice = (
        getattr(settings, "GATEWAY_LIMITER", "") or os.environ.get("PLM_GATEWAY_LIMITER", "")
    ).lower() or "auto"
    if choice == "auto":
        return "redis" if settings.REDIS_URL else "db"
    if choice not in ("redis", "db"):
        raise ValueError(f"GATEWAY_LIMITER must be auto, redis or db, not {choice!r}")
    return choice


def fail_open(rpm: int) -> Decision:
    return Decision(True, "", rpm, rpm, 0.0, 0.0)


# ---- Redis ------------------------------------------------------------------------------------

_redis_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
    weakref.WeakKeyDictionary()
)


def redis_client() -> tuple[redis.asyncio.Redis, Any, Any]:
    """The running loop's async client and the limiter's and token counter's scripts
    registered on it (EVALSHA)."""
    loop = asyncio.get_running_loop()
    found = _redis_clients.get(loop)
    if found is None:
        client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1
        )
        found = _redis_clients[loop] = (
            client,
            client.register_script(LUA_SCRIPT),
            client.register_script(TOKENS_SCRIPT),
        )
    return found


async def redis_aclose() -> None:
    found = _redis_clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found[0].aclose()


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisLimiter:
    name = "redis"

    async def take(
        self, sub_id: Any, rpm: int, quota: int | None, breaker: str | None = None
    ) -> Decision:
        """Take one request; ``breaker`` (a breaker's Redis hash) is read in the same round
        trip (``Decision.breaker_clean``)."""
        now = time.time()
        month, month_left = month_window(now)
        _, script, _ = redis_client()
        keys = [f"{BUCKET_PREFIX}{sub_id}", f"{TOKENS_PREFIX}{sub_id}:{month}", GENERATION_KEY]
        if breaker is not None:
            keys.append(breaker)
        try:
            reply = await script(keys=keys, args=[rpm, -1 if quota is None else quota])
        except redis.RedisError:
            logger.warning("gateway limiter: Redis unreachable, failing open")
            return fail_open(rpm)
        allowed, reason, left, wait_ms, full_ms, used, gen, clean = reply
        reason = _decode(reason)
        return Decision(
            allowed=bool(allowed),
            reason=reason,
            limit_requests=rpm,
            remaining_requests=int(left),
            reset_requests=int(full_ms) / 1000,
            retry_after=month_left if reason == "tokens" else int(wait_ms) / 1000,
            limit_tokens=quota,
            remaining_tokens=None if quota is None else quota - int(used),
            reset_tokens=None if quota is None else month_left,
            generation=_decode(gen),
            breaker_clean=bool(clean),
        )

    async def add_tokens(self, sub_id: Any, tokens: int) -> None:
        if tokens <= 0:
            return
        month, _ = month_window(time.time())
        key = f"{TOKENS_PREFIX}{sub_id}:{month}"
        _, _, script = redis_client()
        try:
            await script(keys=[key], args=[tokens, TOKENS_TTL_SECONDS])
        except redis.RedisError:
            logger.warning("gateway limiter: Redis unreachable, %d tokens not counted", tokens)


async def redis_generation() -> str:
    client, _, _ = redis_client()
    value = await client.get(GENERATION_KEY)
    return _decode(value) if value is not None else "0"


# ---- the database -----------------------------------------------------------------------------


def _sql() -> dict[str, str]:
    q = connection.ops.quote_name
    table, key, window, value = (
        q(LimitCounter._meta.db_table),
        q("key"),
        q("window"),
        q("value"),
    )
    # Identifiers come from the model, values are parameters.
    return {
        "take": f"UPDATE {table} SET {value} = {value} + 1 "  # noqa: S608
        f"WHERE {key} = %s AND {window} = %s AND {value} < %s RETURNING {value}",
        "roll": f"UPDATE {table} SET {window} = %s, {value} = %s "  # noqa: S608
        f"WHERE {key} = %s AND {window} < %s RETURNING {value}",
        "insert": f"INSERT INTO {table} ({key}, {window}, {value}) VALUES (%s, %s, %s) "  # noqa: S608
        f"ON CONFLICT ({key}) DO NOTHING RETURNING {value}",
        "add": f"UPDATE {table} SET {value} = {value} + %s "  # noqa: S608
        f"WHERE {key} = %s AND {window} = %s RETURNING {value}",
        "read": f"SELECT {window}, {value} FROM {table} WHERE {key} = %s",  # noqa: S608
    }


_SQL: dict[str, dict[str, str]] = {}


def sql(name: str) -> str:
    found = _SQL.get(connection.vendor)
    if found is None:
        found = _SQL[connection.vendor] = _sql()
    return found[name]


def _one(cursor, statement: str, params: list[Any]) -> Any:
    cursor.execute(sql(statement), params)
    row = cursor.fetchone()
    return None if row is None else row[0]


def db_take(sub_id: Any, rpm: int, quota: int | None) -> Decision:
    """Check the month's tokens, then take one request of this minute (sync: the database)."""
    now = time.time()
    minute = int(now // 60)
    minute_left = (minute + 1) * 60 - now
    month, month_left = month_window(now)
    used = 0
    with connection.cursor() as cursor:
        if quota is not None:
            cursor.execute(sql("read"), [f"tok:{sub_id}"])
            row = cursor.fetchone()
            used = int(row[1]) if row is not None and int(row[0]) == month else 0
        base = {
            "limit_requests": rpm,
            "limit_tokens": quota,
            "remaining_tokens": None if quota is None else quota - used,
            "reset_tokens": None if quota is None else month_left,
        }
        if quota is not None and used >= quota:
            return Decision(False, "tokens", remaining_requests=rpm, reset_requests=minute_left,
                            retry_after=month_left, **base)  # fmt: skip
        key = f"rpm:{sub_id}"
        count = _one(cursor, "take", [key, minute, rpm])
        if count is None:
            count = _one(cursor, "roll", [minute, 1, key, minute])
        if count is None:
            count = _one(cursor, "insert", [key, minute, 1])
            if count is None:  # another process inserted it first
                count = _one(cursor, "take", [key, minute, rpm])
    if count is None:
        return Decision(False, "requests", remaining_requests=0, reset_requests=minute_left,
                        retry_after=minute_left, **base)  # fmt: skip
    return Decision(True, "", remaining_requests=rpm - int(count), reset_requests=minute_left,
                    retry_after=0.0, **base)  # fmt: skip


def db_add_tokens(sub_id: Any, tokens: int) -> None:
    month, _ = month_window(time.time())
    key = f"tok:{sub_id}"
    with connection.cursor() as cursor:
        if _one(cursor, "add", [tokens, key, month]) is not None:
            return
        if _one(cursor, "roll", [month, tokens, key, month]) is not None:
            return
        if _one(cursor, "insert", [key, month, tokens]) is None:
            _one(cursor, "add", [tokens, key, month])


def _db_take_safe(sub_id: Any, rpm: int, quota: int | None) -> Decision:
    try:
        return db_take(sub_id, rpm, quota)
    except DatabaseError:
        logger.warning("gateway limiter: database error, failing open", exc_info=True)
        connection.close()
        return fail_open(rpm)


def _db_add_safe(sub_id: Any, tokens: int) -> None:
    try:
        db_add_tokens(sub_id, tokens)
    except DatabaseError:
        logger.warning("gateway limiter: database error, %d tokens not counted", tokens)
        connection.close()


class DbLimiter:
    name = "db"

    def __init__(self) -> None:
        self._take = sync_to_async(_db_take_safe, thread_sensitive=True)
        self._add = sync_to_async(_db_add_safe, thread_sensitive=True)

    async def take(
        self, sub_id: Any, rpm: int, quota: int | None, breaker: str | None = None
    ) -> Decision:
        return await self._take(sub_id, rpm, quota)

    async def add_tokens(self, sub_id: Any, tokens: int) -> None:
        if tokens > 0:
            await self._add(sub_id, tokens)


def make_limiter() -> RedisLimiter | DbLimiter:
    return RedisLimiter() if backend_name() == "redis" else DbLimiter()

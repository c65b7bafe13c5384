"""Usage of the gateway, recorded off the response path.

Every request that reached a subscription becomes one ``UsageRecord`` (every outcome: ok, the
upstream's error, a rejected request, a rate-limited one), built in memory with its id and
handed to the running loop's batched recorder (``apps.gateway.recorder``) — the same one that
writes the pipeline's ``ProviderCall`` rows, so both are written together, in batches, in one
transaction, and flushed when the server shuts down (the ASGI lifespan). A key's
``last_used_at`` is queued on the same recorder at most once per ``LAST_USED_EVERY_SECONDS`` per
key and process.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

from apps.gateway import recorder

from ..models import APIKey, UsageOutcome, UsageRecord

LAST_USED_EVERY_SECONDS = 60.0

_last_used: dict[Any, float] = {}  # key id -> when this process last queued its last_used_at


def outcome_for(status: int) -> str:
    if status < 400:
        return UsageOutcome.OK
    if status == 429:
        return UsageOutcome.RATE_LIMITED
    if status >= 500:
        return UsageOutcome.ERROR
    return UsageOutcome.REJECTED


def record(
    *,
    key_id: Any,
    application_id: Any,
    subscription_id: Any,
    api_id: Any,
    release_id: Any,
    endpoint: str,
    streamed: bool,
    status_code: int,
    error_code: str = "",
    result: Any = None,
    latency_ms: int = 0,
) -> UsageRecord:
    """Queue the usage row of one request (no query); returns it (its id is set)."""
    now = time.time()
    row = UsageRecord(
        id=uuid.uuid4(),
        created_at=datetime.fromtimestamp(now, tz=UTC),
        subscription_id=subscription_id,
        api_id=api_id,
        application_id=application_id,
        key_id=key_id,
        release_id=release_id,
        provider_call_id=result.call_id if result is not None else None,
        endpoint=endpoint,
        streamed=streamed,
        status_code=status_code,
        outcome=outcome_for(status_code),
        error_code=(error_code or "")[:64],
        tokens_in=result.tokens_in if result is not None else 0,
        tokens_out=result.tokens_out if result is not None else 0,
        cost=result.cost if result is not None else 0,
        latency_ms=max(0, latency_ms),
    )
    found = recorder.recorder()
    found.add(row)
    last = _last_used.get(key_id)
    if last is None or now - last >= LAST_USED_EVERY_SECONDS:
        _last_used[key_id] = now
        found.touch(APIKey, key_id, last_used_at=row.created_at)
    return row

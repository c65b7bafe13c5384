"""Invalidation of the gateway's in-process snapshot, in every process.

The gateway (``apps.portal.gateway``) answers from an in-process snapshot of keys, applications,
subscriptions, plans, published APIs and their resolved pipeline targets, tagged with the
*generation* it was built under. Whenever a row that the snapshot is made of changes
(``post_save`` / ``post_delete`` of ``PublishedAPI``, ``Plan``, ``Application``,
``Subscription``, ``APIKey``, ``Release``, ``Product``, ``Provider``, ``ProviderPrice``), the
generation is bumped once the transaction commits (``transaction.on_commit``: a rolled-back
change bumps nothing, and no process reloads before the change is visible). Each gateway
request compares its snapshot's generation with the current one and drops the snapshot when
they differ.

Where the generation lives:

- With ``REDIS_URL``: the Redis key ``plm:gateway:generation`` (``INCR``). The gateway reads it
  in the same round trip as its rate-limit script (the script returns it), so checking costs
  nothing extra on the hot path.
- Without Redis: the file ``DATA_DIR/gateway-generation``, replaced atomically (write a
  temporary file, ``os.replace``) on each bump. The gateway ``stat``\\ s it per request: the
  (inode, mtime, size) triple changes with every replacement.

Housekeeping writes (``APIKey.last_used_at`` through ``QuerySet.update``, ``UsageRecord`` and
``ProviderCall`` through ``bulk_create``) send no signals and so bump nothing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import redis
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save

logger = logging.getLogger(__name__)

REDIS_KEY = "plm:gateway:generation"
FILE_NAME = "gateway-generation"

_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
# Bumped in this process too, so a change made here is seen here even if Redis is unreachable.
local_generation = 0


def generation_path() -> Path:
    return Path(settings.DATA_DIR) / FILE_NAME


def _redis(url: str) -> redis.Redis:
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
                _clients[url] = client
    return client


def file_generation() -> tuple[int, int, int]:
    """The generation of the embedded set-up: what identifies the file's current version."""
    try:
        st = generation_path().stat()
    except FileNotFoundError:
        return (0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def bump() -> None:
    """Tell every gateway process that its snapshot is stale (call after commit)."""
    global local_generation
    with _lock:
        local_generation += 1
    url = settings.REDIS_URL
    if url:
        try:
            _redis(url).incr(REDIS_KEY)
        except redis.RedisError:
            logger.exception("gateway invalidation: Redis unreachable; other processes stale")
        return
    path = generation_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    content = f"{time.time_ns()} {os.getpid()} {local_generation}\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".gateway-generation.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(content)
        Path(tmp).replace(path)
    except OSError:
        logger.exception("gateway invalidation: cannot write %s", path)
        with contextlib.suppress(OSError):
            Path(tmp).unlink()


def _changed(sender, **kwargs) -> None:
    transaction.on_commit(bump)


def _connect() -> None:
    from apps.catalog.models import Product
    from apps.gateway.models import Provider, ProviderPrice
    from apps.releases.models import Release

    from .models import APIKey, Application, Plan, PublishedAPI, Subscription

    for model in (
        PublishedAPI,
        Plan,
        Application,
        Subscription,
        APIKey,
        Release,
        Product,
        Provider,
        ProviderPrice,
    ):
        uid = f"portal-gateway-invalidation-{model._meta.label_lower}"
        post_save.connect(_changed, sender=model, dispatch_uid=uid + "-save", weak=False)
        post_delete.connect(_changed, sender=model, dispatch_uid=uid + "-delete", weak=False)


_connect()

"""Telemetry rows written off the response path, in batches, without losing one.

The pipeline builds each call's ``ProviderCall`` row in memory (its id is known at once) and
hands it to the running event loop's recorder; the portal's gateway hands its ``UsageRecord``
rows to the same recorder. Rows of any model may be added: a flush writes what has gathered,
grouped per model (one ``bulk_create`` each, in the order the models first appeared), in ONE
transaction, every ``FLUSH_INTERVAL_SECONDS`` (or as soon as ``FLUSH_BATCH`` rows wait), on a
worker thread, so the caller never waits for the database. ``touch(model, pk, field=value)``
queues a housekeeping update (such as an API key's ``last_used_at``): the latest value per row
and field, written with one ``QuerySet.update`` per model, field and value in the same
transaction, after the inserts. A failed write keeps the rows and updates and tries again at the
next flush (up to ``MAX_PENDING`` rows, then the oldest are logged and dropped); a row that
can never be written (an integrity error: a row it refers to is gone) is logged and dropped
alone, so it does not hold back the others.

Whoever ends an event loop flushes it first: ``pipeline`` does so for every sync entry point
(``run_chat_sync`` and friends return only once their rows are written), and ``flush_all`` at
interpreter exit writes whatever is still pending from any loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import weakref
from collections import defaultdict
from typing import Any

from asgiref.sync import sync_to_async
from django.db import IntegrityError, close_old_connections, models, transaction

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.05
FLUSH_BATCH = 200
MAX_PENDING = 100_000


# (model, pk) -> {field: value}: the housekeeping updates waiting to be written.
Touches = dict[tuple[type[models.Model], Any], dict[str, Any]]


def _write(rows: list[models.Model], touches: Touches | None = None) -> None:
    """Insert ``rows`` (grouped per model) and apply ``touches``, in one transaction."""
    by_model: dict[type[models.Model], list[models.Model]] = {}
    for row in rows:
        by_model.setdefault(type(row), []).append(row)
    updates: dict[tuple[type[models.Model], str, Any], list[Any]] = defaultdict(list)
    for (model, pk), fields in (touches or {}).items():
        for name, value in fields.items():
            updates[(model, name, value)].append(pk)
    try:
        with transaction.atomic():
            for model, group in by_model.items():
                model._default_manager.bulk_create(group, batch_size=500)
            for (model, name, value), pks in updates.items():
                model._default_manager.filter(pk__in=pks).update(**{name: value})
    except IntegrityError:
        if len(rows) + len(updates) <= 1:
            logger.exception("call recorder: a row can never be written; dropped")
            return
        # One bad row (say, its subscription was deleted meanwhile) must not hold back the
        # others for ever: write them one at a time and drop only the ones that fail.
        for row in rows:
            _write([row])
        for (model, name, value), pks in updates.items():
            _write([], {(model, pk): {name: value} for pk in pks})


class Recorder:
    """One per event loop: the rows waiting to be written, and the task that writes them."""

    def __init__(self) -> None:
        self.pending: list[models.Model] = []
        self.touches: Touches = {}
        self.lock = threading.Lock()
        self.task: asyncio.Task | None = None
        self.wake: asyncio.Event | None = None

    def add(self, row: models.Model) -> None:
        with self.lock:
            self.pending.append(row)
            if len(self.pending) > MAX_PENDING:
                dropped = self.pending[: len(self.pending) - MAX_PENDING]
                del self.pending[: len(dropped)]
                logger.error("call recorder: %d unwritten calls dropped", len(dropped))
            full = len(self.pending) >= FLUSH_BATCH
        self._ensure_task()
        if full and self.wake is not None:
            self.wake.set()

    def touch(self, model: type[models.Model], pk: Any, **fields: Any) -> None:
        """Queue a housekeeping update of one row (the latest value of each field wins)."""
        with self.lock:
            self.touches.setdefault((model, pk), {}).update(fields)
        self._ensure_task()

    def _ensure_task(self) -> None:
        if self.task is None or self.task.done():
            self.wake = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._run())

    def take(self) -> tuple[list[models.Model], Touches]:
        with self.lock:
            rows, self.pending = self.pending, []
            touches, self.touches = self.touches, {}
        return rows, touches

    def put_back(self, rows: list[models.Model], touches: Touches) -> None:
        with self.lock:
            self.pending[:0] = rows
            for key, fields in touches.items():
                self.touches[key] = {**fields, **self.touches.get(key, {})}

    async def flush(self) -> None:
        rows, touches = self.take()
        if not rows and not touches:
            return
        try:
            await sync_to_async(_write, thread_sensitive=True)(rows, touches)
        except Exception:
            logger.exception("call recorder: writing %d rows failed; retrying", len(rows))
            self.put_back(rows, touches)
            raise

    async def _run(self) -> None:
        while True:
            wake = self.wake
            if wake is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=FLUSH_INTERVAL_SECONDS)
                wake.clear()
            try:
                await self.flush()
            except Exception:  # logged in flush; try again next tick
                await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            with self.lock:
                if not self.pending and not self.touches:
                    self.task = None
                    return


_recorders: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Recorder] = (
    weakref.WeakKeyDictionary()
)


def recorder() -> Recorder:
    loop = asyncio.get_running_loop()
    found = _recorders.get(loop)
    if found is None:
        found = _recorders[loop] = Recorder()
    return found


async def flush() -> None:
    """Write the running loop's pending rows now (before the loop ends, or to read them back)."""
    found = _recorders.get(asyncio.get_running_loop())
    if found is not None:
        await found.flush()


async def aclose() -> None:
    """Write the running loop's pending rows and stop its writer task (the loop is ending)."""
    found = _recorders.pop(asyncio.get_running_loop(), None)
    if found is None:
        return
    task = found.task
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await found.flush()


def flush_all() -> None:
    """Write every loop's pending rows from this (sync) thread: the last word at exit."""
    rows: list[models.Model] = []
    touches: Touches = {}
    for found in list(_recorders.values()):
        more, more_touches = found.take()
        rows.extend(more)
        touches.update(more_touches)
    if rows or touches:
        close_old_connections()
        _write(rows, touches)


atexit.register(flush_all)

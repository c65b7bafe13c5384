"""ProviderCall rows written off the response path, in batches, without losing one.

The pipeline builds each call's row in memory (its id is known at once) and hands it to the
running event loop's recorder, which writes what has gathered with one ``bulk_create`` every
``FLUSH_INTERVAL_SECONDS`` (or as soon as ``FLUSH_BATCH`` rows wait), on a worker thread, so
the caller never waits for the database. A failed write keeps the rows and tries again at the
next flush (up to ``MAX_PENDING`` rows, then the oldest are logged and dropped).

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

from asgiref.sync import sync_to_async
from django.db import close_old_connections, transaction

from .models import ProviderCall

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_SECONDS = 0.05
FLUSH_BATCH = 200
MAX_PENDING = 100_000


def _write(rows: list[ProviderCall]) -> None:
    with transaction.atomic():
        ProviderCall.objects.bulk_create(rows, batch_size=500)


class Recorder:
    """One per event loop: the rows waiting to be written, and the task that writes them."""

    def __init__(self) -> None:
        self.pending: list[ProviderCall] = []
        self.lock = threading.Lock()
        self.task: asyncio.Task | None = None
        self.wake: asyncio.Event | None = None

    def add(self, row: ProviderCall) -> None:
        with self.lock:
            self.pending.append(row)
            if len(self.pending) > MAX_PENDING:
                dropped = self.pending[: len(self.pending) - MAX_PENDING]
                del self.pending[: len(dropped)]
                logger.error("call recorder: %d unwritten calls dropped", len(dropped))
            full = len(self.pending) >= FLUSH_BATCH
        if self.task is None or self.task.done():
            self.wake = asyncio.Event()
            self.task = asyncio.get_running_loop().create_task(self._run())
        if full and self.wake is not None:
            self.wake.set()

    def take(self) -> list[ProviderCall]:
        with self.lock:
            rows, self.pending = self.pending, []
        return rows

    def put_back(self, rows: list[ProviderCall]) -> None:
        with self.lock:
            self.pending[:0] = rows

    async def flush(self) -> None:
        rows = self.take()
        if not rows:
            return
        try:
            await sync_to_async(_write, thread_sensitive=True)(rows)
        except Exception:
            logger.exception("call recorder: writing %d calls failed; retrying", len(rows))
            self.put_back(rows)
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
                if not self.pending:
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
    rows: list[ProviderCall] = []
    for found in list(_recorders.values()):
        rows.extend(found.take())
    if rows:
        close_old_connections()
        _write(rows)


atexit.register(flush_all)

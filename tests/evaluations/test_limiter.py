"""The per-provider limiter: a semaphore of expiring leases shared by every process.

Each test runs on both backends: the file lock (no Redis, the embedded set-up) and Redis (when
REDIS_URL is set, as in CI). Another process shares the semaphore through the same backend.
"""

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from apps.evaluations.limiter import Limiter

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["file", "redis"])
def backend(request, settings, tmp_path):
    if request.param == "redis":
        url = os.environ.get("REDIS_URL", "")
        if not url:
            pytest.skip("REDIS_URL is not set")
        settings.REDIS_URL = url
    else:
        settings.REDIS_URL = ""
        settings.DATA_DIR = tmp_path
    return request.param


def limiter(limit=2, lease=30.0) -> Limiter:
    return Limiter(f"test:{uuid.uuid4().hex}", limit, lease_seconds=lease)


def test_a_slot_is_taken_up_to_the_limit_and_given_back(backend):
    lim = limiter(limit=2)
    a, b = lim.try_acquire(), lim.try_acquire()
    assert a and b and a != b
    assert lim.try_acquire() is None
    assert lim.in_use() == 2
    lim.release_sync(a)
    c = lim.try_acquire()
    assert c and lim.in_use() == 2
    lim.release_sync(b)
    lim.release_sync(c)
    assert lim.in_use() == 0


def test_an_expired_lease_frees_its_slot(backend):
    """GIVEN a holder that never gives its lease back (its process died)
    THEN the slot is free again once the lease has expired."""
    lim = limiter(limit=1, lease=0.3)
    assert lim.try_acquire()
    assert lim.try_acquire() is None
    time.sleep(0.45)
    assert lim.in_use() == 0
    assert lim.try_acquire()


def test_a_held_lease_is_renewed_while_its_call_runs(backend):
    """GIVEN a lease of 0.3 s held for 1 s by an async caller
    THEN it never expired under it (renewed every third of its life) and is free after."""
    lim = limiter(limit=1, lease=0.3)

    async def hold():
        lease = await lim.acquire()
        seen = []
        for _ in range(5):
            await asyncio.sleep(0.2)
            seen.append(lim.in_use())
        await lim.release(lease)
        await lim.aclose()
        return seen

    assert asyncio.run(hold()) == [1] * 5
    assert lim.in_use() == 0


def test_waiters_never_exceed_the_limit(backend):
    lim = limiter(limit=3)
    inside, peak = 0, 0

    async def call():
        nonlocal inside, peak
        lease = await lim.acquire(timeout=10)
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0.02)
        inside -= 1
        await lim.release(lease)

    async def main():
        await asyncio.gather(*(call() for _ in range(20)))
        await lim.aclose()

    asyncio.run(main())
    assert peak == 3
    assert lim.in_use() == 0


def test_acquire_gives_up_after_its_timeout(backend):
    lim = limiter(limit=1)
    held = lim.try_acquire()

    async def wait():
        with pytest.raises(TimeoutError):
            await lim.acquire(timeout=0.1)

    asyncio.run(wait())
    lim.release_sync(held)


HOLDER = """
import os, sys, time
sys.path.insert(0, {root!r})
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "plmportal.settings")
import django
django.setup()
from django.conf import settings
settings.REDIS_URL = {redis!r}
settings.DATA_DIR = {data_dir!r}
from apps.evaluations.limiter import Limiter
lim = Limiter({name!r}, 2, lease_seconds={lease})
leases = [lim.try_acquire(), lim.try_acquire()]
print("held" if all(leases) else "refused", flush=True)
time.sleep(60)
"""


def test_two_processes_share_the_slots_and_a_killed_holders_slots_come_back(backend, settings):
    """GIVEN another process that takes both slots of a semaphore and is then killed (SIGKILL)
    THEN this process finds no slot while it holds them, and finds them again once its leases
    have expired."""
    name = f"test:{uuid.uuid4().hex}"
    script = HOLDER.format(
        root=str(ROOT),
        redis=settings.REDIS_URL,
        data_dir=str(settings.DATA_DIR),
        name=name,
        lease=1.0,
    )
    env = {**os.environ, "DJANGO_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        assert proc.stdout.readline().strip() == "held"
        lim = Limiter(name, 2, lease_seconds=1.0)
        assert lim.in_use() == 2
        assert lim.try_acquire() is None
        proc.kill()
        proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while lim.in_use() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lim.in_use() == 0
        assert lim.try_acquire() and lim.try_acquire()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_without_redis_the_limiter_fails_open(settings):
    """GIVEN a Redis URL where nothing listens THEN a call is let through at once (logged)."""
    from ..gateway.upstream import free_port

    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    lim = limiter(limit=1)
    assert lim.try_acquire() == ""

    async def main():
        started = time.monotonic()
        lease = await lim.acquire()
        await lim.release(lease)
        await lim.aclose()
        return lease, time.monotonic() - started

    lease, took = asyncio.run(main())
    assert lease == "" and took < 3


def test_a_providers_limit_comes_from_its_config(settings):
    from types import SimpleNamespace

    settings.EVALUATIONS_PROVIDER_MAX_CONCURRENCY = 5
    default = Limiter.for_provider(SimpleNamespace(slug="p", config={}))
    assert (default.name, default.limit, default.lease_seconds) == ("provider:p", 5, 30.0)
    own = Limiter.for_provider(
        SimpleNamespace(slug="q", config={"max_concurrency": 12, "concurrency_lease_seconds": 4})
    )
    assert (own.limit, own.lease_seconds) == (12, 4.0)
    odd = Limiter.for_provider(SimpleNamespace(slug="r", config={"max_concurrency": "lots"}))
    assert odd.limit == 5

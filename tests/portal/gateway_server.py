"""Real uvicorn servers on 127.0.0.1 serving ``plmportal.asgi:application`` for gateway tests.

A server is a subprocess sharing the test database (the SQLite file or the PostgreSQL test
database of ``tests.worker.test_database_url``), the data directory (the embedded set-up's
invalidation file) and ``REDIS_URL``. Tests that use one must be transactional (the server has
to see committed rows). ``stop()`` sends SIGTERM: uvicorn finishes in-flight requests, then the
ASGI lifespan's shutdown writes every pending usage and call row.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.worker import ROOT, test_database_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GatewayServer:
    def __init__(self, *, limiter: str = "auto", env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.limiter = limiter
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self.log = Path(ROOT) / "var" / f"gateway-{self.port}.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        return f"{self.base_url}/v1"

    def start(self, timeout: float = 60) -> GatewayServer:
        env = {
            **os.environ,
            "DATABASE_URL": test_database_url(),
            "PYTHONUNBUFFERED": "1",
            "PLM_GATEWAY_LIMITER": self.limiter,
            "DJANGO_LOG_LEVEL": "WARNING",
            **self.extra_env,
        }
        env.pop("PLM_TEST_SQLITE", None)
        self.log.parent.mkdir(exist_ok=True)
        self._fh = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "plmportal.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "--no-access-log",
                "--lifespan",
                "on",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway server exited: {self.output()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"gateway server not ready in {timeout}s: {self.output()[-3000:]}")

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM and wait: a graceful shutdown (the lifespan flushes pending rows)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()
        return self.proc.returncode if self.proc is not None else None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        fh = getattr(self, "_fh", None)
        if fh is not None and not fh.closed:
            fh.close()

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)


def start_many(count: int, **kwargs) -> list[GatewayServer]:
    """Start ``count`` servers side by side (in parallel: each takes a Django start-up)."""
    servers = [GatewayServer(**kwargs) for _ in range(count)]
    # Popen all first, then wait for each: the start-ups overlap.
    import threading

    errors: list[BaseException] = []

    def run(server: GatewayServer) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        for s in servers:
            s.kill()
        raise errors[0]
    return servers

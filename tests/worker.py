"""A real Celery worker process sharing the test database, for workflow tests."""

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def test_database_url() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    port = f":{s['PORT']}" if s.get("PORT") else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}{port}/{s['NAME']}"


class Worker:
    def __init__(self) -> None:
        self.queue = f"test-{uuid.uuid4().hex[:8]}"
        self.proc: subprocess.Popen | None = None
        self.log = ROOT / "var" / f"{self.queue}.log"

    def start(self, timeout: float = 60) -> "Worker":
        env = {**os.environ, "DATABASE_URL": test_database_url(), "PYTHONUNBUFFERED": "1"}
        env.pop("PLM_TEST_SQLITE", None)
        self.log.parent.mkdir(exist_ok=True)
        self._fh = self.log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "plmportal",
                "worker",
                "-P",
                "solo",
                "-Q",
                self.queue,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-n",
                f"{self.queue}@%h",
                "--loglevel=INFO",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {self.log.read_text()[-3000:]}")
            if "ready." in self.log.read_text():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready in {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._fh.close()
        self.log.unlink(missing_ok=True)

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

"""A real ``iopcare api`` in its own process, with its output in a log file: the reliability suite
drives it over HTTP as a client would, and scans its log afterwards (as :class:`WorkerProcess` of
``tests/integration/workers.py`` does for the processor)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from iopcare.embedded.runtime import free_port
from iopcare.settings import Settings


class ApiProcess:
    """``python -m iopcare.cli api --port N`` on the given broker, database and topics."""

    def __init__(
        self,
        kafka: str,
        database_url: str,
        settings: Settings,
        log_dir: Path,
        name: str = "api",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}.log"
        env = dict(
            os.environ,
            IOPCARE_KAFKA_BOOTSTRAP=kafka,
            IOPCARE_DATABASE_URL=database_url,
            IOPCARE_EVENTS_TOPIC=settings.events_topic,
            IOPCARE_DEAD_LETTER_TOPIC=settings.dead_letter_topic,
            IOPCARE_ALERTS_TOPIC=settings.alerts_topic,
            IOPCARE_TOPIC_PARTITIONS=str(settings.topic_partitions),
            **(extra_env or {}),
        )
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "iopcare.cli", "api", "--port", str(self.port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=log_dir,
        )

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:
            return bool(response.status == 200)

    async def wait_ready(self, within: float = 60) -> None:
        """Wait until ``/readyz`` answers 200: Postgres and the broker are both reachable."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"api exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            try:
                if await asyncio.to_thread(self._ready):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            await asyncio.sleep(0.2)
        raise TimeoutError(f"api not ready within {within}s:\n{self.log()[-3000:]}")

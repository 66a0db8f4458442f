"""Real iopcare services (processor workers, the API) as subprocesses, for integration tests (no
in-process fakes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import asyncpg
from kafka import KafkaConsumer
from kafka.consumer.fetcher import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from iopcare.embedded.runtime import free_port
from iopcare.settings import Settings
from iopcare.store.roles import Service
from tests.databases import service_url


class ServiceProcess:
    """An ``iopcare`` service (``worker``, ``api``) in its own process on the given broker, database
    and topics, with its output in a log file and its web server on a free port. It connects to the
    database as its own role (``service``), as in production."""

    role = "service"
    service: Service

    def __init__(
        self,
        arguments: list[str],
        kafka: str,
        database_url: str,
        settings: Settings,
        log_dir: Path,
        log_name: str,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{log_name}.log"
        env = dict(
            os.environ,
            IOPCARE_KAFKA_BOOTSTRAP=kafka,
            IOPCARE_DATABASE_URL=service_url(database_url, self.service),
            IOPCARE_EVENTS_TOPIC=settings.events_topic,
            IOPCARE_DEAD_LETTER_TOPIC=settings.dead_letter_topic,
            IOPCARE_ALERTS_TOPIC=settings.alerts_topic,
            IOPCARE_TOPIC_PARTITIONS=str(settings.topic_partitions),
            **(extra_env or {}),
        )
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "iopcare.cli", *arguments, str(self.port)],
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

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return str(response.read().decode())

    async def wait_for(self, path: str, within: float) -> None:
        """Wait until ``path`` answers 200; fails at once if the process exits."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.role} exited with {self.process.returncode}:\n{self.log()[-3000:]}"
                )
            try:
                await asyncio.to_thread(self._get, path)
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                await asyncio.sleep(0.2)
        raise TimeoutError(f"{self.role} not answering {path} within {within}s:\n{self.log()[-3000:]}")


class WorkerProcess(ServiceProcess):
    """`iopcare worker` in its own process, with its output in a log file."""

    role = "worker"
    service = "processor"

    def __init__(
        self,
        kafka: str,
        database_url: str,
        settings: Settings,
        log_dir: Path,
        app_id: str,
        name: str = "w1",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.app_id = app_id
        super().__init__(
            ["worker", "--web-port"],
            kafka,
            database_url,
            settings,
            log_dir,
            f"worker-{name}",
            {"IOPCARE_PROCESSOR_APP_ID": app_id, **(extra_env or {})},
        )

    async def wait_healthy(self, within: float = 60) -> None:
        """Wait until the worker's web server answers ``/healthz`` (it has started its app)."""
        await self.wait_for("/healthz", within)

    async def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` (e.g. ``iopcare_events_processed_total``) on the worker's
        ``/metrics`` whose labels include ``labels``; 0 when there is none yet."""
        exposition = await asyncio.to_thread(self._get, "/metrics")
        return sum(
            sample.value
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.name == name and labels.items() <= sample.labels.items()
        )

    async def wait_for_metric(self, name: str, expected: float, within: float = 90, **labels: str) -> float:
        """Poll ``metric(name, **labels)`` until it reaches ``expected``; returns the last value."""
        deadline = time.monotonic() + within
        value = await self.metric(name, **labels)
        while value < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            value = await self.metric(name, **labels)
        return value


async def wait_for_count(database_url: str, query: str, expected: int, within: float = 90) -> int:
    """Poll ``query`` (a count) until it reaches ``expected``; returns the last value."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        value = -1
        while time.monotonic() < deadline:
            value = await connection.fetchval(query)
            if value >= expected:
                return int(value)
            await asyncio.sleep(0.25)
        return int(value)
    finally:
        await connection.close()


def read_topic(kafka: str, topic: str, count: int, within_ms: int = 10_000) -> list[ConsumerRecord]:
    """The first ``count`` records of ``topic`` (fewer if no more arrive within ``within_ms``)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=kafka, auto_offset_reset="earliest", consumer_timeout_ms=within_ms
    )
    try:
        return [record for _, record in zip(range(count), consumer, strict=False)]
    finally:
        consumer.close()

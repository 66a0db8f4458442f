"""A real ``iopcare api`` in its own process, with its output in a log file: the reliability suite
drives it over HTTP as a client would, and scans its log afterwards (as :class:`WorkerProcess` of
``tests/integration/workers.py`` does for the processor)."""

from __future__ import annotations

from pathlib import Path

from iopcare.embedded.runtime import free_port
from iopcare.settings import Settings
from tests.integration.workers import ServiceProcess


class ApiProcess(ServiceProcess):
    """``python -m iopcare.cli api --port N`` on the given broker, database and topics."""

    role = "api"
    service = "api"

    def __init__(
        self,
        kafka: str,
        database_url: str,
        settings: Settings,
        log_dir: Path,
        name: str = "api",
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.metrics_port = free_port()
        env = {"IOPCARE_API_METRICS_PORT": str(self.metrics_port), **(extra_env or {})}
        super().__init__(["api", "--port"], kafka, database_url, settings, log_dir, name, env)

    async def wait_ready(self, within: float = 60) -> None:
        """Wait until ``/readyz`` answers 200: Postgres and the broker are both reachable."""
        await self.wait_for("/readyz", within)

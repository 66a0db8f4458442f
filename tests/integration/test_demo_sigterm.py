"""SIGTERM stops `iopcare demo` as Ctrl-C does: the worker, the API and the dispatcher it started,
and its embedded broker and Postgres, are all gone when it exits (a process supervisor, `timeout`
or `docker stop` sends SIGTERM, not SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited


def test_sigterm_stops_the_demo_its_services_and_its_embedded_servers(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if k not in ("IOPCARE_KAFKA_BOOTSTRAP", "IOPCARE_DATABASE_URL")
    }
    env["IOPCARE_STATE_DIR"] = str(tmp_path)
    demo = subprocess.Popen(
        [sys.executable, "-m", "iopcare.cli", "demo", "--patients", "30", "--exit"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    started: list[int] = []  # what the demo started: killed at the end if the test failed
    try:
        _terminated_once_serving(demo, started, tmp_path)
    finally:
        if demo.poll() is None:
            demo.kill()
        for pid in started:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _terminated_once_serving(demo: subprocess.Popen[str], started: list[int], tmp_path: Path) -> None:
    assert demo.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = demo.stdout.readline()
        assert line, "the demo ended early:\n" + "".join(seen[-40:])
        seen.append(line)
        if line.startswith("== Counselor inbox"):
            break
    services = _children(demo.pid)
    assert len(services) >= 3, seen[-20:]  # the worker, the API and the dispatcher
    (runtime,) = tmp_path.rglob("runtime.json")
    broker = json.loads(runtime.read_text())["broker_pid"]
    postmaster = int((runtime.parent / "postgres" / "postmaster.pid").read_text().split()[0])
    started += [*services, broker, postmaster]
    assert all(_alive(pid) for pid in started)

    demo.send_signal(signal.SIGTERM)
    rest, _ = demo.communicate(timeout=120)
    output = "".join(seen) + rest
    assert "Stopped the demo's broker and Postgres" in output, output[-3000:]
    gone_by = time.monotonic() + 30
    while time.monotonic() < gone_by and any(_alive(pid) for pid in started):
        time.sleep(0.2)
    assert [pid for pid in started if _alive(pid)] == [], "left running after SIGTERM"

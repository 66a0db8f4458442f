"""A CLI command asks only for the servers it uses, and a missing, unreachable or invalid setting is
one line naming the fix, never a traceback (each case runs `iopcare` as a process, as a user would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _iopcare(tmp_path: Path, *arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("IOPCARE_")}
    base["IOPCARE_STATE_DIR"] = str(tmp_path)  # no embedded runtime there
    return subprocess.run(
        [sys.executable, "-m", "iopcare.cli", *arguments],
        env=base | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_postgres_command_with_no_database_configured_names_the_setting_not_kafka(tmp_path: Path) -> None:
    done = _iopcare(tmp_path, "tokens", "create", "--role", "counselor", "--subject", "staff-c01")
    assert done.returncode == 1
    assert _one_line_error(done) == (
        "Error: no server configured: set IOPCARE_DATABASE_URL, or start the embedded ones with "
        "`iopcare dev up`"
    )


def test_an_unreachable_database_is_one_line_without_its_password(tmp_path: Path) -> None:
    url = "postgresql://iop:s3cret-pw@127.0.0.1:1/iopcare"
    done = _iopcare(tmp_path, "tokens", "list", IOPCARE_DATABASE_URL=url)
    assert done.returncode == 1
    line = _one_line_error(done)
    assert line.startswith("Error: cannot reach Postgres at postgresql://iop:***@127.0.0.1:1/iopcare (")
    assert "check IOPCARE_DATABASE_URL" in line and "s3cret-pw" not in done.stderr + done.stdout


def test_a_broker_command_with_no_broker_configured_names_the_setting(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text("")
    done = _iopcare(tmp_path, "publish", str(events))
    assert done.returncode == 1
    assert "set IOPCARE_KAFKA_BOOTSTRAP," in _one_line_error(done)


def test_an_unreachable_broker_is_one_line_naming_it(tmp_path: Path) -> None:
    events = tmp_path / "events.ndjson"
    events.write_text("")
    done = _iopcare(
        tmp_path,
        "publish",
        str(events),
        IOPCARE_KAFKA_BOOTSTRAP="127.0.0.1:1",
        IOPCARE_PUBLISH_TIMEOUT_SECONDS="2",  # how long it waits for a broker before saying so
    )
    assert done.returncode == 1
    assert _one_line_error(done).startswith("Error: the broker at 127.0.0.1:1 is not reachable (")


def test_an_invalid_setting_is_named_with_its_variable(tmp_path: Path) -> None:
    done = _iopcare(tmp_path, "tokens", "list", IOPCARE_API_PORT="eighty")
    assert done.returncode == 1
    line = _one_line_error(done)
    assert line.startswith("Error: invalid setting: IOPCARE_API_PORT: ") and "integer" in line


@pytest.mark.parametrize("command", [["worker", "--web-port", "0"], ["dispatcher", "--web-port", "70000"]])
def test_a_bad_port_is_a_usage_error(tmp_path: Path, command: list[str]) -> None:
    done = _iopcare(tmp_path, *command)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--web-port" in done.stderr and "is not in the range 1<=x<=65535" in done.stderr

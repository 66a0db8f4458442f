"""`make demo` (``iopcare demo --exit``) end to end, twice: it streams the synthetic cohort through a
real worker, the API and the webhook dispatcher on an embedded broker and Postgres of its own, shows
alerts with their explanations, and a second run starts from empty servers again (the cohort's event
ids repeat, so a reused database would show the first run's state)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from iopcare.embedded.demo import DEMO_NOTE
from iopcare.simulation import cohort_roster

pytestmark = pytest.mark.integration

WEEK_1_STATES = re.compile(r"^  p-\w+ +(steady|improving|disengaging|relapsing|crisis) +wk")
EVENTS_LOGGED = re.compile(r"^-- after program week \d+: [\d,]+ events logged$")


def _iopcare(state_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("IOPCARE_KAFKA_BOOTSTRAP", "IOPCARE_DATABASE_URL")
    }
    env["IOPCARE_STATE_DIR"] = str(state_dir)
    return subprocess.run(
        [sys.executable, "-m", "iopcare.cli", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _demo(state_dir: Path) -> str:
    done = _iopcare(state_dir, "demo", "--exit")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_the_demo_shows_explained_alerts_and_a_rerun_starts_from_empty_servers(tmp_path: Path) -> None:
    first = _demo(tmp_path)
    assert "== Starting an empty embedded broker and Postgres for the demo" in first
    # Alerts fire for the cohort, each with its explanation and recommended action.
    created = [line for line in first.splitlines() if re.search(r"\bcreated\s+(critical|high|medium)", line)]
    assert len(created) >= 10
    assert first.count("        why: ") >= len(created) and first.count("        do:  ") >= len(created)
    assert "== Dead letters: 3 malformed messages went to iop.events.v1.dlq" in first
    inbox = re.search(r"inbox through the API \(GET /v1/alerts\): (\d+) live alerts", first)
    assert inbox is not None and int(inbox.group(1)) > 0
    assert "acknowledged the first: state acknowledged" in first
    # No discharged patient keeps a live alert but a safety alert handed to the supervisor, and
    # alerts resolve themselves with their reason when their condition clears.
    ended = re.search(
        r"(\d+) patients discharged; their live alerts: (\d+) safety alerts handed to the supervisor, "
        r"(\d+) others",
        first,
    )
    assert ended is not None and int(ended.group(1)) > 0 and int(ended.group(3)) == 0, ended
    resolved = re.search(
        r"(\d+) alerts resolved: (\d+) when their condition cleared, (\d+) at discharge", first
    )
    assert resolved is not None and int(resolved.group(2)) > 0 and int(resolved.group(3)) > 0, resolved
    assert re.search(r"^     silence: checked in on \w{3} \d+ \w{3} \d\d:\d\d after \d+ hours$", first, re.M)
    webhook = re.search(r"(\d+) signed POSTs carried (\d+) alert notices .*; 0 failed verification", first)
    assert webhook is not None and int(webhook.group(1)) > 0
    # The featured counselor's daily digest, made by the dispatcher and read through the API.
    assert re.search(
        r"today's digest \(GET /v1/digests\): Daily summary for \w{3} \d+ \w{3}: \d+ items? about", first
    )
    assert "Stopped the demo's broker and Postgres" in first
    _check_the_service_logs(tmp_path / "demo", first)

    # Every stored state is what the event log folds to.
    rebuilt = _iopcare(tmp_path, "state", "rebuild", "--demo")
    assert rebuilt.returncode == 0, rebuilt.stdout[-3000:] + rebuilt.stderr[-3000:]
    summary = re.search(r"^(\d+) patients, (\d+) events: 0 differences$", rebuilt.stdout, re.MULTILINE)
    assert summary is not None and int(summary.group(1)) >= 40 and int(summary.group(2)) > 1000, (
        rebuilt.stdout
    )

    second = _demo(tmp_path)
    # The states after the first program week (derived from events only) and the events logged by
    # each checkpoint are the first run's: nothing of the first run was left in the servers. (The
    # alert counts at a checkpoint are not compared: they include absence checks and escalations
    # the worker's sweep takes on the stream clock once a second, whenever it gets to them.)
    for pattern in (EVENTS_LOGGED, WEEK_1_STATES):
        assert _lines(second, pattern) == _lines(first, pattern)
    assert len(_lines(first, EVENTS_LOGGED)) == 6
    assert len(_lines(first, WEEK_1_STATES)) == 5  # one patient of each archetype
    assert all(re.search(r" wk +1 ", line) for line in _lines(first, WEEK_1_STATES))


def _lines(output: str, pattern: re.Pattern[str]) -> list[str]:
    if pattern is WEEK_1_STATES:  # the featured patients' rows between week 1's two checkpoints
        block = output.split("-- after program week 1:", 1)[1].split("-- after program week", 1)[0]
        return [line for line in block.splitlines() if pattern.match(line)]
    return [line for line in output.splitlines() if pattern.match(line)]


SERVICES = ("worker", "api", "dispatcher")


def _check_the_service_logs(log_dir: Path, demo_output: str) -> None:
    """Every service logs JSON lines: the API each request with its request id, the worker each alert
    and the dispatcher each webhook under the trace of the event that caused them (one trace from the
    published event to the webhook POST); and no line holds a patient id, the counselor's note, the
    API token or the webhook secret."""
    lines = {name: (log_dir / f"{name}.log").read_text().splitlines() for name in SERVICES}
    records: dict[str, list[dict[str, object]]] = {}
    for name, text in lines.items():
        assert text, f"{name} logged nothing"
        records[name] = [json.loads(line) for line in text]  # every line is one JSON object
        for record in records[name]:
            assert record["service"] == name
            assert {"timestamp", "level", "logger", "message"} <= set(record), record
    requests = [r for r in records["api"] if r["message"] == "request"]
    assert any(r["route"] == "/v1/alerts/{alert_id}/acknowledge" for r in requests)
    assert all(re.fullmatch(r"[0-9a-f-]{36}", str(r["request_id"])) for r in requests)
    acknowledged = re.search(r"acknowledged the first: .*; request ([0-9a-f-]{36})\)", demo_output)
    assert acknowledged is not None and acknowledged.group(1) in {r["request_id"] for r in requests}
    alerts = [r for r in records["worker"] if str(r["message"]).startswith("alert ")]
    deliveries = [r for r in records["dispatcher"] if r["message"] == "webhook delivered"]
    assert alerts and deliveries
    assert all(re.fullmatch(r"[0-9a-f]{32}", str(r["trace_id"])) for r in alerts + deliveries)
    assert {r["trace_id"] for r in alerts} & {r["trace_id"] for r in deliveries}, "no trace runs end to end"

    token = re.search(r"with this token \(valid 1 day\):\n   (\S+)", demo_output)
    assert token is not None
    secrets = {token.group(1)}
    patients = {p.patient_id for p in cohort_roster(48, seed=7)} | set(
        re.findall(r"\bp-[0-9a-f]{10}\b", demo_output)
    )
    assert len(patients) >= 48
    for name, text in lines.items():
        log = "\n".join(text)
        leaked = sorted(p for p in patients if p in log)
        assert not leaked, f"{name}.log names patients {leaked[:3]}"
        assert DEMO_NOTE not in log and DEMO_NOTE[:20] not in log, f"{name}.log holds the note"
        assert not any(secret in log for secret in secrets), f"{name}.log holds the API token"
        assert "whsec_" not in log, f"{name}.log holds a webhook secret"

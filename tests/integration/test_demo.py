"""`make demo` (``iopcare demo --exit``) end to end, twice: it streams the synthetic cohort through a
real worker, the API and the webhook dispatcher on an embedded broker and Postgres of its own, shows
alerts with their explanations, and a second run starts from empty servers again (the cohort's event
ids repeat, so a reused database would show the first run's state)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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

"""The reliability suite's frame: where scenarios run (:class:`Env`), what each one returns
(:class:`Outcome`), the other pytest-based scenarios run as a subprocess, and the report.

A scenario is a module ``tests/reliability/scenario_*.py`` with ``async def run(env, quick) -> Outcome``.
It starts real ``iopcare worker`` processes against the real broker and Postgres of ``env``, does its
harm (kill -9, rebalance, a Postgres outage, load), and ends in assertions on the outcome, collected
as ``failures`` rather than raised, so one run reports every scenario and every figure.
The pytest files in ``tests/reliability`` (marked ``reliability``) run in one subprocess; their
results come back through pytest's JUnit XML, one row per file.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from iopcare.embedded import EmbeddedRuntime
from iopcare.settings import Settings
from tests.bench.environment import host
from tests.databases import create_migrated, drop, fresh_topics

PROJECT_ROOT = Path(__file__).resolve().parents[2]
REPORT = PROJECT_ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- reliability:begin -->", "<!-- reliability:end -->"
QUICK_ENV = "IOPCARE_RELIABILITY_QUICK"


@dataclass
class Outcome:
    """What one scenario found: passed only if ``failures`` is empty."""

    name: str
    passed: bool
    figures: dict[str, str] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, name: str, figures: dict[str, str], failures: list[str]) -> Outcome:
        return cls(name, not failures, figures, failures)


@dataclass
class Env:
    """A broker and a Postgres server for scenarios, and what they created there.

    ``runtime`` is the embedded runtime when the servers are embedded ones (the Postgres outage
    needs it to stop and start Postgres); None for external servers.
    """

    kafka_bootstrap: str
    server_url: str  # a Postgres URL on the server; scenarios make databases of their own
    log_dir: Path
    runtime: EmbeddedRuntime | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _databases: list[str] = field(default_factory=list)

    async def fresh_database(self, label: str) -> str:
        """A new, migrated database for one scenario; dropped by :meth:`close`."""
        name = f"iopcare_rel_{self.run_id}_{label}"
        self._databases.append(name)
        return await create_migrated(self.server_url, name)

    def fresh_topics(self, label: str, partitions: int) -> Settings:
        """Settings naming new topics of this run, created on the broker."""
        return fresh_topics(self.kafka_bootstrap, f"rel.{self.run_id}.{label}", partitions)

    def logs(self, label: str) -> Path:
        folder = self.log_dir / label
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def close(self) -> None:
        """Drop the databases the scenarios made (the broker's topics vanish with it)."""
        names, self._databases = self._databases, []
        if names:
            await drop(self.server_url, *names)


# -- the pytest-based scenarios ----------------------------------------------------------------


@dataclass(frozen=True)
class PytestFile:
    """Results of one test file of ``tests/reliability``."""

    path: str
    passed: int
    failed: int
    skipped: int
    seconds: float
    recorded: dict[str, str] = field(default_factory=dict)  # the tests' record_property figures

    def outcome(self) -> Outcome:
        figures = {
            "tests passed": str(self.passed),
            "failed": str(self.failed),
            "seconds": f"{self.seconds:.0f}",
            **self.recorded,
        }
        if self.skipped:
            figures["skipped"] = str(self.skipped)
        failures = [f"{self.failed} test(s) failed"] if self.failed else []
        return Outcome.of(self.path, figures, failures)


def run_pytest_scenarios(quick: bool, junit: Path, timeout: float) -> tuple[list[Outcome], str]:
    """``pytest tests/reliability -m reliability`` in a subprocess; one outcome per file, and the tail
    of pytest's output (for the console when something failed)."""
    if not any((PROJECT_ROOT / "tests" / "reliability").glob("test_*.py")):
        return [Outcome.of("tests/reliability (pytest)", {"tests": "no test files yet"}, [])], ""
    env = dict(os.environ, **{QUICK_ENV: "1" if quick else "0"})
    command = [
        sys.executable, "-m", "pytest", "tests/reliability", "-m", "reliability",
        f"--junitxml={junit}", "-o", "junit_family=xunit1", "-q", "-p", "no:cacheprovider",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout
        return [
            Outcome.of("tests/reliability (pytest)", {}, [f"timed out after {timeout:.0f}s"])
        ], output or ""
    tail = (done.stdout + done.stderr)[-4000:]
    if done.returncode == 5:  # nothing collected: no pytest scenarios on this branch
        return [Outcome.of("tests/reliability (pytest)", {"tests": "none collected"}, [])], tail
    if not junit.exists():
        return [Outcome.of("tests/reliability (pytest)", {}, [f"pytest exited {done.returncode}"])], tail
    files = junit_by_file(junit)
    outcomes = [f.outcome() for f in files]
    if done.returncode not in (0, 1) or not outcomes:
        outcomes.append(Outcome.of("tests/reliability (pytest)", {}, [f"pytest exited {done.returncode}"]))
    return outcomes, tail


def junit_by_file(junit: Path) -> list[PytestFile]:
    """Passed/failed/skipped counts per test file from a JUnit XML report (xunit1: ``file`` given)."""
    counts: dict[str, Counter[str]] = {}
    seconds: Counter[str] = Counter()
    recorded: dict[str, dict[str, str]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        path = case.get("file") or _file_of(case.get("classname", ""))
        for prop in case.iter("property"):
            recorded.setdefault(path, {})[prop.get("name", "?").replace("_", " ")] = prop.get("value", "")
        kinds = {child.tag for child in case}
        verdict = "failed" if kinds & {"failure", "error"} else "skipped" if "skipped" in kinds else "passed"
        counts.setdefault(path, Counter())[verdict] += 1
        seconds[path] += float(case.get("time") or 0)
    return [
        PytestFile(path, c["passed"], c["failed"], c["skipped"], seconds[path], recorded.get(path, {}))
        for path, c in sorted(counts.items())
    ]


def _file_of(classname: str) -> str:
    """``tests.reliability.test_x.TestY`` -> ``tests/reliability/test_x.py`` (the longest that exists)."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        candidate = Path(*parts[:end]).with_suffix(".py")
        if (PROJECT_ROOT / candidate).exists():
            return candidate.as_posix()
    return classname


# -- the report ----------------------------------------------------------------------------------


def table(outcomes: list[Outcome]) -> str:
    """One markdown table: scenario, result, figures (and the first failures)."""
    rows = ["| scenario | result | figures |", "| --- | --- | --- |"]
    for outcome in outcomes:
        figures = "; ".join(f"{k}: {v}" for k, v in outcome.figures.items())
        if outcome.failures:
            figures += ("; " if figures else "") + "**failures:** " + " / ".join(outcome.failures[:3])
        result = "pass" if outcome.passed else "**FAIL**"
        rows.append(f"| {outcome.name} | {result} | {_cell(figures)} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def machine() -> str:
    """Cores, CPU model and memory of this machine, and the OS."""
    cpu, memory_kib, _ = host()
    return (
        f"{os.cpu_count()} cores, {cpu}, {memory_kib / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    )


def git_commit() -> str:
    """The commit the suite ran on (with ``+changes`` when the tree was not clean)."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{commit}{' +changes' if dirty else ''}" if commit else "unknown"


def report(outcomes: list[Outcome], *, quick: bool, started: datetime, seconds: float) -> str:
    """The figures section: when, where, on which commit, how long, then the table."""
    passed = sum(o.passed for o in outcomes)
    return "\n".join(
        [
            f"Run: `make reliability{'-quick' if quick else ''}` on {started:%Y-%m-%d %H:%M} UTC, "
            f"{seconds / 60:.1f} min, commit `{git_commit()}`.",
            f"Machine: {machine()}.",
            f"Result: {passed} of {len(outcomes)} rows passed.",
            "",
            table(outcomes),
        ]
    )


def write_report(section: str, path: Path = REPORT) -> None:
    """Replace what is between the markers of ``path`` with ``section`` (the rest is prose)."""
    text = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"{path} has no {BEGIN} ... {END} markers")
    path.write_text(pattern.sub(lambda _m: f"{BEGIN}\n{section}\n{END}", text, count=1))


def now() -> datetime:
    return datetime.now(UTC)

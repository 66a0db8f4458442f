"""The benchmark harness end to end on a tiny workload: every contender runs and every event is
accounted for. Figures are not judged here (they belong in docs/benchmarks.md, not in a test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iopcare.endpoints import Endpoints
from tests.bench import replay as replay_bench
from tests.bench.__main__ import Options, run
from tests.bench.environment import BenchEnvironment
from tests.bench.report import BEGIN, CONTENDERS, END, markdown, verdicts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_harness_reports_every_contender_with_all_events_accounted_for(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    environment = BenchEnvironment(
        state_dir=tmp_path, kafka_bootstrap=endpoints.kafka_bootstrap, server_url=endpoints.database_url
    )
    options = Options(
        events=300,
        repeat=1,
        latency_rate=100,
        latency_seconds=1,
        memory_patients=20,
        replay_patients=8,  # every scenario runs by default, the offline replay too: keep it tiny
        replay_days=21,
        out=tmp_path / "b.md",
    )
    try:
        report = run(options, environment, say=lambda _line: None)
        assert report is not None
    finally:
        environment.down()  # drops the databases it created

    assert set(report.throughput) == set(CONTENDERS)
    for key, runs in report.throughput.items():
        (result,) = runs
        assert result.events == 300
        assert result.processed >= 300, key  # a rebalance may redeliver, never lose
        assert result.rate > 0 and result.seconds >= 0, key
        if key != "noop":
            assert result.stored == 300, key  # each event logged once
            assert 0 < (result.applied or 0) <= 300, key  # the consent gate may hold some back
    assert sum(report.throughput["scaling"][0].per_process) >= 300

    for latency in (report.latency, report.latency_noop):
        assert latency is not None
        assert latency.sent == latency.seen == 100, latency.kind
        assert 0 < latency.p50_ms <= latency.p99_ms <= latency.max_ms, latency.kind
    assert report.latency is not None and report.latency.worker["records"] >= 100

    memory = report.memory
    assert memory is not None
    assert memory.stored_patients >= memory.patients == 20
    assert 0 < memory.baseline_rss_mib <= memory.peak_rss_mib

    assert len(verdicts(report)) == 5
    written = (tmp_path / "b.md").read_text()
    assert markdown(report) in written
    assert all(label in written for label in CONTENDERS.values())


def test_replay_benchmark_times_every_stage_and_writes_its_own_section(tmp_path: Path) -> None:
    """The offline scenario needs no runtime and leaves the processor's section of the page alone."""
    page = tmp_path / "b.md"
    page.write_text(f"# Benchmarks\n\n{BEGIN}\nprocessor figures\n{END}\n\nanalysis by people\n")
    options = Options(only=("replay",), replay_patients=8, replay_days=21, repeat=1, out=page)
    assert run(options, say=lambda _line: None) is None

    written = page.read_text()
    assert f"{BEGIN}\nprocessor figures\n{END}" in written and "analysis by people" in written
    assert replay_bench.BEGIN in written and replay_bench.END in written
    rows = [line for line in written.splitlines() if line.startswith("| ") and "events/s" not in line]
    assert len(rows) == 6, rows  # decode, fold, rules, lifecycle, whole command on 1 and on 2 processes
    assert all(float(row.split("|")[2].replace(",", "")) > 0 for row in rows), rows
    assert "`iopcare replay --jobs 2`" in written


def test_the_batch_time_benchmark_runs_a_tree_on_a_fresh_database(endpoints: Endpoints) -> None:
    """`make bench-batch`'s contender run, on this checkout and a tiny cohort (the before/after
    comparison itself needs a git worktree and minutes: it stays behind its make target)."""
    from tests.bench.batch_time import _run
    from tests.bench.processes import PROJECT_ROOT

    result = _run(PROJECT_ROOT, endpoints.database_url, "smoke", patients=3, batch=100)
    assert result["code"] == str(PROJECT_ROOT / "services" / "iopcare" / "__init__.py")
    times = result["times"]
    assert (
        isinstance(times, list)
        and len(times) == -(-int(result["events"]) // 100)
        and all(t > 0 for t in times)
    )  # type: ignore[call-overload]

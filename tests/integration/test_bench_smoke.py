"""The benchmark harness end to end on a tiny workload: every contender runs and every event is
accounted for. Figures are not judged here (they belong in docs/benchmarks.md, not in a test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iopcare.endpoints import Endpoints
from tests.bench.__main__ import Options, run
from tests.bench.environment import BenchEnvironment
from tests.bench.report import CONTENDERS, markdown, verdicts

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_quick_harness_reports_every_contender_with_all_events_accounted_for(
    endpoints: Endpoints, tmp_path: Path
) -> None:
    environment = BenchEnvironment(
        state_dir=tmp_path, kafka_bootstrap=endpoints.kafka_bootstrap, server_url=endpoints.database_url
    )
    options = Options(
        events=300, repeat=1, latency_rate=100, latency_seconds=1, memory_patients=20, out=tmp_path / "b.md"
    )
    try:
        report = run(options, environment, say=lambda _line: None)
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

"""The measurements: throughput (any contender, one or more processes), latency and memory.

Throughput is measured on a topic loaded *before* the contender starts, from the first record the
contender reports finished to the moment it has finished all of them: process start-up and the
consumer-group join are excluded, and every contender is timed by the same rule. The harness polls
each process's progress every ``POLL_SECONDS`` (the pipeline's own ``/metrics`` counter, which moves
after each batch commits; the others' ``/progress``), so both ends of the window are late by at
most one poll. With several processes, the *steady* rate is the combined rate while all of them
are busy (after the last one has started, before the first one has run out of work).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.error import URLError

import asyncpg

from iopcare.processor.pipeline import EngagementPipeline, Record
from iopcare.publish import EventPublisher
from iopcare.settings import Settings
from iopcare.store.engagement import EngagementStore
from iopcare.store.events import RejectedRecord
from tests.bench import workload as wl
from tests.bench.environment import BenchEnvironment
from tests.bench.processes import (
    Contender,
    cpu_seconds,
    histogram_share_within,
    http_get,
    machine_busy_seconds,
    memory_mib,
    metric_total,
    spawn,
    stop_all,
)
from tests.databases import service_url

POLL_SECONDS = 0.05
LATENCY_POLL_SECONDS = 0.02
Say = Callable[[str], None]


class BenchmarkError(RuntimeError):
    """A contender died, stalled or lost events."""


# -- results -----------------------------------------------------------------------------------


@dataclass
class ThroughputResult:
    """One contender's run over the pre-loaded topic."""

    key: str
    label: str
    processes: int
    events: int  # records on the topic
    processed: int  # records the contender reports finished
    stored: int | None  # event_log rows afterwards (contenders that write to Postgres)
    applied: int | None  # sum of patient_state.events_applied afterwards
    seconds: float  # measurement window: first finished record -> all finished
    rate: float  # events/s over that window
    steady_rate: float | None  # events/s while every process was busy (several processes only)
    startup_seconds: float  # process start -> first finished record (start-up, join, first batch)
    cpu_cores: dict[str, float]  # average cores busy during the window, by component
    peak_rss_mib: float  # largest VmHWM of the contender's processes
    per_process: list[int] = field(default_factory=list)  # records finished by each process


@dataclass
class LatencyResult:
    """Publish-to-visible latency of one process at a steady rate."""

    kind: str  # "pipeline": publish -> visible in Postgres; "noop": Kafka timestamp -> ack
    target_rate: float
    seconds: float
    sent: int
    seen: int
    achieved_rate: float  # events handed to the publisher per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    poll_ms_mean: float  # the poller's period (the measurement's resolution)
    worker_share_within_500ms: float | None  # the worker's own arrival-to-commit histogram
    cpu_cores: dict[str, float]
    # What the pipeline worker did meanwhile, from its /metrics (empty for the no-op agent).
    worker: dict[str, float] = field(default_factory=dict)


@dataclass
class MemoryResult:
    """The worker's memory after touching many patients' state."""

    patients: int
    events: int
    stored_patients: int
    baseline_rss_mib: float  # after start-up and a warm-up batch
    peak_rss_mib: float  # VmHWM: the most it ever held
    final_rss_mib: float  # after all events were committed


# -- helpers -----------------------------------------------------------------------------------


def contender_env(
    environment: BenchEnvironment, topics: Settings, app_id: str, database_url: str
) -> dict[str, str]:
    """The IOPCARE_* settings a contender process runs with (as the processor's database role)."""
    return {
        "IOPCARE_KAFKA_BOOTSTRAP": environment.kafka_bootstrap,
        "IOPCARE_DATABASE_URL": service_url(database_url, "processor"),
        "IOPCARE_EVENTS_TOPIC": topics.events_topic,
        "IOPCARE_DEAD_LETTER_TOPIC": topics.dead_letter_topic,
        "IOPCARE_ALERTS_TOPIC": topics.alerts_topic,
        "IOPCARE_TOPIC_PARTITIONS": str(topics.topic_partitions),
        "IOPCARE_PROCESSOR_APP_ID": app_id,
    }


class CpuClock:
    """CPU seconds of named groups of processes, to tell which of them was busy during a window."""

    def __init__(self, environment: BenchEnvironment, contenders: Sequence[Contender], label: str) -> None:
        self._environment = environment
        self._contenders = contenders
        self._label = label

    def read(self) -> dict[str, dict[int, float]]:
        groups: dict[str, list[int]] = {self._label: [c.process.pid for c in self._contenders]}
        groups.update(self._environment.infrastructure_pids())
        reading = {name: {pid: cpu_seconds(pid) for pid in pids} for name, pids in groups.items()}
        own = os.times()
        reading["harness"] = {os.getpid(): own.user + own.system}
        reading["machine"] = {0: machine_busy_seconds()}  # everyone's, other users' work included
        return reading

    @staticmethod
    def cores(
        start: dict[str, dict[int, float]], end: dict[str, dict[int, float]], seconds: float
    ) -> dict[str, float]:
        """Average cores busy per group between two readings (a process new since ``start`` counts fully)."""
        if seconds <= 0:
            return {}
        busy: dict[str, float] = {}
        for name, pids in end.items():
            before = start.get(name, {})
            used = sum(max(0.0, value - before.get(pid, 0.0)) for pid, value in pids.items())
            busy[name] = round(used / seconds, 2)
        return busy


def _progress(contender: Contender) -> int | None:
    with contextlib.suppress(URLError, OSError, ValueError, KeyError):
        return contender.progress()
    return None  # not serving yet (starting) or busy past the timeout


def _check_alive(contenders: Sequence[Contender]) -> None:
    for contender in contenders:
        if not contender.alive():
            raise BenchmarkError(
                f"{contender.name} exited with {contender.process.returncode}:\n{contender.log_tail()}"
            )


async def _count(database_url: str, query: str, *args: object) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        return int(await connection.fetchval(query, *args) or 0)
    finally:
        await connection.close()


async def _wait_for_rows(
    database_url: str, keys: Sequence[tuple[str, str]], contenders: Sequence[Contender], within: float
) -> None:
    """Until the events with these idempotency keys are in event_log (a worker is up and joined)."""
    deadline = time.monotonic() + within
    query = (
        "SELECT count(*) FROM event_log WHERE (source, event_id) IN "
        "(SELECT * FROM unnest($1::text[], $2::text[]))"
    )
    sources, ids = [k[0] for k in keys], [k[1] for k in keys]
    while time.monotonic() < deadline:
        _check_alive(contenders)
        if await _count(database_url, query, sources, ids) >= len(keys):
            return
        await asyncio.sleep(0.1)
    raise BenchmarkError(f"the worker did not commit the warm-up events within {within:.0f}s")


# -- throughput --------------------------------------------------------------------------------


async def throughput(
    environment: BenchEnvironment,
    *,
    key: str,
    label: str,
    kind: str,
    processes: int,
    events: int,
    topics: Settings,
    log_dir: Path,
    worker_env: Mapping[str, str],
    say: Say,
    within: float = 600,
) -> ThroughputResult:
    """Start ``processes`` contender processes of ``kind`` on the pre-loaded topic; time them."""
    database_url = "" if kind == "noop" else await environment.fresh_database(key)
    app_id = f"bench-{environment.run_id}-{key}"
    env = contender_env(environment, topics, app_id, database_url)
    contenders: list[Contender] = []
    try:
        for number in range(1, processes + 1):
            contenders.append(spawn(kind, f"{key}-{number}", env, log_dir, worker_env))
        clock = CpuClock(environment, contenders, "contender")
        samples: list[tuple[float, list[int]]] = []
        counts = [0] * processes
        first: tuple[float, int, dict[str, dict[int, float]]] | None = None
        deadline = time.monotonic() + within
        last_said = 0.0
        while True:
            await asyncio.sleep(POLL_SECONDS)
            _check_alive(contenders)
            probed = await asyncio.gather(*(asyncio.to_thread(_progress, c) for c in contenders))
            at = time.monotonic()
            counts = [value if value is not None else counts[i] for i, value in enumerate(probed)]
            total = sum(counts)
            samples.append((at, list(counts)))
            if first is None and total > 0:
                first = (at, total, clock.read())
            if total >= events:
                end_reading = clock.read()
                break
            if at > deadline:
                raise BenchmarkError(f"{label}: {total} of {events} records after {within:.0f}s")
            if at - last_said >= 5:
                last_said = at
                say(f"     {label}: {total:,}/{events:,}")
        assert first is not None
        started_at, started_total, start_reading = first
        seconds = samples[-1][0] - started_at
        rate = (total - started_total) / seconds if seconds > 0 else float("inf")
        peak_rss = max(memory_mib(c.process.pid)[1] for c in contenders)
        stored = applied = None
        if database_url:
            # Redelivered records count as finished too; then wait for the last originals' commit.
            settle = time.monotonic() + 30
            while (stored := await _count(database_url, "SELECT count(*) FROM event_log")) < events:
                if time.monotonic() > settle:
                    break
                await asyncio.sleep(0.1)
            applied = await _count(database_url, "SELECT coalesce(sum(events_applied), 0) FROM patient_state")
        return ThroughputResult(
            key=key,
            label=label,
            processes=processes,
            events=events,
            processed=total,
            stored=stored,
            applied=applied,
            seconds=round(seconds, 3),
            rate=rate,
            steady_rate=_steady_rate(samples) if processes > 1 else None,
            startup_seconds=round(started_at - min(c.started_at for c in contenders), 2),
            cpu_cores=CpuClock.cores(start_reading, end_reading, seconds),
            peak_rss_mib=round(peak_rss, 1),
            per_process=counts,
        )
    finally:
        stop_all(contenders)


def _steady_rate(samples: list[tuple[float, list[int]]], minimum_seconds: float = 0.5) -> float | None:
    """Combined rate while every process was busy: from the last one's first record to the first
    one's last record. None when that overlap is shorter than ``minimum_seconds``."""
    finals = samples[-1][1]
    processes = len(finals)
    began = [next((t for t, c in samples if c[i] > 0), None) for i in range(processes)]
    ended = [next(t for t, c in samples if c[i] >= finals[i]) for i in range(processes)]
    if any(b is None for b in began):
        return None
    start, end = max(b for b in began if b is not None), min(ended)
    if end - start < minimum_seconds:
        return None
    at_start = next(sum(c) for t, c in samples if t >= start)
    at_end = next(sum(c) for t, c in samples if t >= end)
    return (at_end - at_start) / (end - start)


async def in_process(
    environment: BenchEnvironment, *, key: str, workload: wl.Workload, batch_size: int, say: Say
) -> ThroughputResult:
    """The pipeline's own cost: ``EngagementPipeline.handle`` on the same events in batches of
    ``batch_size``, in this process, into a fresh database; no broker, no Faust."""
    database_url = await environment.fresh_database(key)
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=Settings().database_pool_size)
    assert pool is not None

    async def no_dead_letters(_items: Sequence[RejectedRecord]) -> None:
        raise BenchmarkError("the benchmark's events are all valid")

    try:
        pipeline = EngagementPipeline(EngagementStore(pool), no_dead_letters)
        records = [
            Record("bench", index % 8, index, None, payload, time.time())
            for index, payload in enumerate(workload.payloads)
        ]
        start_cpu, started = time.process_time(), time.perf_counter()
        for first in range(0, len(records), batch_size):
            await pipeline.handle(records[first : first + batch_size])
        seconds = time.perf_counter() - started
        cpu = time.process_time() - start_cpu
        stored = await _count(database_url, "SELECT count(*) FROM event_log")
        applied = await _count(database_url, "SELECT coalesce(sum(events_applied), 0) FROM patient_state")
    finally:
        await pool.close()
    return ThroughputResult(
        key=key,
        label="pipeline in-process (no Kafka, no Faust)",
        processes=1,
        events=len(workload),
        processed=len(records),
        stored=stored,
        applied=applied,
        seconds=round(seconds, 3),
        rate=len(records) / seconds,
        steady_rate=None,
        startup_seconds=0.0,
        cpu_cores={"contender": round(cpu / seconds, 2)},
        peak_rss_mib=0.0,
    )


# -- latency -----------------------------------------------------------------------------------


async def latency(
    environment: BenchEnvironment,
    *,
    kind: str,
    rate: float,
    seconds: float,
    log_dir: Path,
    worker_env: Mapping[str, str],
    say: Say,
) -> LatencyResult:
    """One process of ``kind`` ("pipeline" or "noop"), a producer at a steady ``rate`` for ``seconds``.

    Pipeline: per event, first seen in Postgres minus handed to the publisher; a poller asks every
    ``LATENCY_POLL_SECONDS`` for the events sent and not yet seen, by primary key. No-op agent: per
    record, its ack minus its Kafka timestamp (set by the producer on send), as the agent reports.
    """
    events = wl.events_workload(max(1, round(rate * seconds)), seed=2)
    topics = environment.fresh_topics(f"latency-{kind}", partitions=8)
    database_url = "" if kind == "noop" else await environment.fresh_database(f"latency_{kind}")
    env = contender_env(environment, topics, f"bench-{environment.run_id}-latency-{kind}", database_url)
    worker = spawn(kind, f"latency-{kind}", env, log_dir, worker_env)
    try:
        warm = wl.warm_up_workload()
        wl.publish(environment.kafka_bootstrap, topics.events_topic, warm)
        if kind == "noop":
            await _wait_for_progress(worker, len(warm), within=120)
            before, before_exposition = (0.0, 0.0), ""
        else:
            await _wait_for_rows(database_url, warm.keys, [worker], within=120)
            before_exposition = worker.metrics()
            before = histogram_share_within(before_exposition, "iopcare_arrival_to_commit_seconds", "0.5")
        clock = CpuClock(environment, [worker], "worker")
        start_reading, start_at = clock.read(), time.monotonic()

        sent_at: list[float] = [0.0] * len(events)
        sent = 0

        def record(index: int, at: float) -> None:
            nonlocal sent
            sent_at[index] = at
            sent = index + 1

        failure: list[BaseException] = []

        def produce() -> None:
            try:
                with EventPublisher(environment.kafka_bootstrap, topics.events_topic) as publisher:
                    publisher.publish_all(wl.paced(events, rate, record))
            except BaseException as exc:  # reported by the poller
                failure.append(exc)

        producer = threading.Thread(target=produce, name="paced-producer", daemon=True)
        producer.start()
        say(f"     publishing {len(events):,} events at {rate:.0f}/s for {seconds:.0f}s")
        polls: list[float] = []
        deadline = time.monotonic() + seconds + 60

        def check() -> None:
            if failure:
                raise BenchmarkError(f"the paced producer failed: {failure[0]!r}")
            _check_alive([worker])
            if time.monotonic() > deadline:
                raise BenchmarkError(f"{kind}: not all of {len(events)} events were done in time")

        if kind == "noop":
            while (_progress(worker) or 0) < len(warm) + len(events):
                check()
                await asyncio.sleep(POLL_SECONDS)
            latencies = json.loads(http_get(f"http://127.0.0.1:{worker.port}/delays?skip={len(warm)}"))
        else:
            latencies = await _poll_visibility(database_url, events, sent_at, lambda: sent, check, polls)
        end_reading, window = clock.read(), time.monotonic() - start_at
        producer.join(timeout=30)
        within = total = 0.0
        internals: dict[str, float] = {}
        if kind != "noop":
            exposition = worker.metrics()
            after = histogram_share_within(exposition, "iopcare_arrival_to_commit_seconds", "0.5")
            within, total = after[0] - before[0], after[1] - before[1]
            internals = {
                name: metric_total(exposition, metric) - metric_total(before_exposition, metric)
                for name, metric in WORKER_INTERNALS.items()
            }
        ordered = sorted(latencies)
        periods = [b - a for a, b in itertools.pairwise(polls)]
        return LatencyResult(
            kind=kind,
            target_rate=rate,
            seconds=seconds,
            sent=sent,
            seen=len(latencies),
            achieved_rate=(sent - 1) / (sent_at[sent - 1] - sent_at[0]) if sent > 1 else 0.0,
            p50_ms=_percentile(ordered, 50) * 1000,
            p95_ms=_percentile(ordered, 95) * 1000,
            p99_ms=_percentile(ordered, 99) * 1000,
            max_ms=ordered[-1] * 1000,
            poll_ms_mean=statistics.fmean(periods) * 1000 if periods else 0.0,
            worker_share_within_500ms=within / total if total else None,
            cpu_cores=CpuClock.cores(start_reading, end_reading, window),
            worker=internals,
        )
    finally:
        stop_all([worker])


# Pipeline metrics read around the latency run, to tell where a worker's time went.
WORKER_INTERNALS = {
    "batches": "iopcare_batch_size_records_count",
    "records": "iopcare_batch_size_records_sum",
    "commit_seconds": "iopcare_batch_commit_duration_seconds_sum",
    "sweeps": "iopcare_absence_sweep_duration_seconds_count",
    "sweep_seconds": "iopcare_absence_sweep_duration_seconds_sum",
    "absence_checks_fired": "iopcare_absence_checks_fired_total",
    "alert_events_published": "iopcare_alert_events_published_total",
}


async def _wait_for_progress(contender: Contender, records: int, within: float) -> None:
    deadline = time.monotonic() + within
    while (_progress(contender) or 0) < records:
        _check_alive([contender])
        if time.monotonic() > deadline:
            raise BenchmarkError(f"{contender.name} did not finish the warm-up within {within:.0f}s")
        await asyncio.sleep(0.1)


async def _poll_visibility(
    database_url: str,
    events: wl.Workload,
    sent_at: list[float],
    sent: Callable[[], int],
    check: Callable[[], None],
    polls: list[float],
) -> list[float]:
    """Seconds from handing each event to the publisher to the first poll that finds it in event_log.

    A poll's snapshot is taken just after ``poll_at``, and the previous poll did not see the event,
    so each figure is late by at most one poll period (``polls`` records when each poll started).
    """
    index_of = {k: i for i, k in enumerate(events.keys)}
    latencies: list[float] = []
    pending: set[int] = set()
    queued = 0
    connection = await asyncpg.connect(database_url)
    try:
        while len(latencies) < len(events):
            check()
            now_sent = sent()
            pending.update(range(queued, now_sent))
            queued = max(queued, now_sent)
            poll_at = time.time()
            polls.append(time.monotonic())
            if pending:
                keys = [events.keys[i] for i in pending]
                rows = await connection.fetch(
                    "SELECT source, event_id FROM event_log WHERE (source, event_id) IN "
                    "(SELECT * FROM unnest($1::text[], $2::text[]))",
                    [k[0] for k in keys],
                    [k[1] for k in keys],
                )
                for row in rows:
                    index = index_of[(row["source"], row["event_id"])]
                    pending.discard(index)
                    latencies.append(poll_at - sent_at[index])
            await asyncio.sleep(LATENCY_POLL_SECONDS)
    finally:
        await connection.close()
    return latencies


def _percentile(ordered: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(1, min(len(ordered), round(percent / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


# -- memory ------------------------------------------------------------------------------------


async def memory(
    environment: BenchEnvironment,
    *,
    patients: int,
    log_dir: Path,
    worker_env: Mapping[str, str],
    say: Say,
) -> MemoryResult:
    """One worker: RSS after a warm-up, then after yesterday's events of ``patients`` new patients
    (every patient's enrolment and first events, so every patient's state is created and updated)."""
    events = wl.recent_day_workload(patients)
    topics = environment.fresh_topics("memory", partitions=8)
    database_url = await environment.fresh_database("memory")
    env = contender_env(environment, topics, f"bench-{environment.run_id}-memory", database_url)
    worker = spawn("pipeline", "memory-1", env, log_dir, worker_env)
    try:
        warm = wl.warm_up_workload()
        wl.publish(environment.kafka_bootstrap, topics.events_topic, warm)
        await _wait_for_rows(database_url, warm.keys, [worker], within=120)
        baseline, _ = memory_mib(worker.process.pid)
        say(f"     {len(events):,} events of {events.patients:,} patients; worker RSS {baseline:.0f} MiB")
        wl.publish(environment.kafka_bootstrap, topics.events_topic, events)
        expected = len(events) + len(warm)
        deadline = time.monotonic() + 600
        while (done := _progress(worker) or 0) < expected:
            _check_alive([worker])
            if time.monotonic() > deadline:
                raise BenchmarkError(f"memory: {done} of {expected} records after 600s")
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # let the last batch's garbage go
        final, peak = memory_mib(worker.process.pid)
        stored = await _count(database_url, "SELECT count(*) FROM patient_state WHERE state <> '{}'::jsonb")
        return MemoryResult(
            patients=events.patients,
            events=len(events),
            stored_patients=stored,
            baseline_rss_mib=round(baseline, 1),
            peak_rss_mib=round(peak, 1),
            final_rss_mib=round(final, 1),
        )
    finally:
        stop_all([worker])

"""Scenario 7, load: a steady 500 events/s for 10 minutes (quick: 45 s) into two workers.

Traffic as a live clinic makes it, on the wall clock: patients newly enrolled in the last day and a
half (one-day cohorts, a new set of patients every thousand), so no absence check falls due in the
run. Among it, at known moments, a *probe*: a check-in reporting a safety concern for a patient
enrolled before the load began, which must raise a critical alert. Per probe, the latency from
handing it to the producer to (a) its alert row committed in Postgres and (b) its alert event on
``iop.alerts.v1``. Meanwhile the RSS of each worker (and the broker) every few seconds, with the slope
of a least-squares line as the growth trend. Afterwards: every event logged, no dead letter.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from iopcare.contract import encode_event
from iopcare.simulation import generate_cohort
from tests.bench.processes import memory_mib
from tests.reliability.exactness import Fleet, PacedStream, counts, healthy, until
from tests.reliability.harness import Env, Outcome

NAME = "7. load: 500 events/s, two workers, wall clock"
PARTITIONS = 8
CHUNK_PATIENTS = 1000  # patients per one-day cohort (~5,400 events)


@dataclass(frozen=True)
class Plan:
    rate: float
    seconds: float
    probe_every: int  # one probe per this many events
    rss_every: float  # seconds between memory samples
    max_rss_slope: float | None  # MiB per minute allowed after the warm-up; None: reported only
    # The embedded broker (Tansu, memory storage) keeps every record in memory: its growth may be at
    # most this many times the bytes appended to it during the load; None: reported only.
    max_broker_growth_per_appended: float | None


FULL = Plan(
    rate=500,
    seconds=600,
    probe_every=250,
    rss_every=10,
    max_rss_slope=1.0,
    max_broker_growth_per_appended=4.0,
)
QUICK = Plan(
    rate=500,
    seconds=45,
    probe_every=100,
    rss_every=5,
    max_rss_slope=None,
    max_broker_growth_per_appended=None,
)
WORKER_ENV = {"IOPCARE_CLOCK": "wall"}


def load_payloads(count: int, now: datetime) -> list[bytes]:
    """About ``count`` events of patients enrolled in the last 36 hours, in time order per cohort."""
    payloads: list[bytes] = []
    for seed in itertools.count(7000):
        events = generate_cohort(CHUNK_PATIENTS, seed=seed, start=now - timedelta(hours=36), days=1)
        payloads += [encode_event(e) for e in events if e.time <= now]
        if len(payloads) >= count:
            return payloads[:count]
    raise AssertionError("unreachable")


def probe_patients(count: int, template: bytes, now: datetime) -> tuple[list[str], list[bytes]]:
    """Patients of the probes and their enrolments (sent before the load): no other events."""
    rng = random.Random(7777)
    wire = json.loads(template)
    patients = [f"rel-probe-{rng.getrandbits(40):010x}" for _ in range(count)]
    enrolments = [
        json.dumps(
            dict(wire, id=f"{patient}-enrolled", subject=patient, time=(now - timedelta(hours=1)).isoformat())
        ).encode()
        for patient in patients
    ]
    return patients, enrolments


def crisis_checkin(patient: str, at: datetime) -> bytes:
    """A check-in reporting a safety concern: the `safety` rule raises a critical alert at once."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": f"{patient}-crisis",
            "source": "checkin-app",
            "type": "iop.checkin.submitted",
            "time": at.isoformat(),
            "subject": patient,
            "datacontenttype": "application/json",
            "data": {
                "craving": 3,
                "mood": 2,
                "sleep_hours": 4.0,
                "substance_use_reported": False,
                "safety_concern": True,
            },
        }
    ).encode()


class ProbedLoad:
    """The load with a probe in place of every ``probe_every``-th event, built as it is sent (a probe
    carries the time it is handed to the producer), recording when each probe went."""

    def __init__(self, load: list[bytes], patients: list[str], probe_every: int) -> None:
        self.load = load
        self.patients = patients
        self.probe_every = probe_every
        self.sent_at: dict[str, float] = {}  # patient -> time.time() when handed to the producer

    def __len__(self) -> int:
        return len(self.load)

    def __iter__(self) -> Iterator[bytes]:
        probes = iter(self.patients)
        for index, payload in enumerate(self.load):
            if index % self.probe_every == self.probe_every // 2:
                patient = next(probes)
                self.sent_at[patient] = time.time()
                yield crisis_checkin(patient, datetime.now(UTC))
            else:
                yield payload


def percentile(ordered: list[float], share: float) -> float:
    """Nearest-rank percentile of sorted values."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(share / 100 * len(ordered) + 0.5) - 1))]


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) samples, in MiB per minute."""
    if len(samples) < 3:
        return 0.0
    xs, ys = [s[0] for s in samples], [s[1] for s in samples]
    return statistics.linear_regression(xs, ys).slope * 60


async def _watch_postgres(
    database_url: str, probed: ProbedLoad, seen: dict[str, float], stop: asyncio.Event
) -> None:
    """Every 50 ms: which probes' alerts are committed (the alert row exists)."""
    connection = await asyncpg.connect(database_url)
    try:
        while not stop.is_set():
            # The producer thread adds to sent_at meanwhile: iterate over a copy (atomic under the GIL).
            waiting = [p for p in probed.sent_at.copy() if p not in seen]
            if waiting:
                rows = await connection.fetch(
                    "SELECT patient_id FROM alerts WHERE rule_id = 'safety' AND patient_id = ANY($1::text[])",
                    waiting,
                )
                at = time.time()
                for row in rows:
                    seen.setdefault(row["patient_id"], at)
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def _watch_topic(
    kafka: str, topic: str, seen: dict[str, float], stop: asyncio.Event, appended: list[int]
) -> None:
    """Alert events of the probes as they arrive on the alerts topic (fetch wait 100 ms); adds the
    bytes of every record's key, value and headers to ``appended[0]``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        while not stop.is_set():
            for records in (await consumer.getmany(timeout_ms=200)).values():
                at = time.time()
                for record in records:
                    appended[0] += _record_bytes(record.key, record.value, record.headers)
                    event = json.loads(record.value)
                    if event["subject"].startswith("rel-probe-") and event["data"]["rule_id"] == "safety":
                        seen.setdefault(event["subject"], at)
    finally:
        await consumer.stop()


def _record_bytes(key: bytes | None, value: bytes | None, headers: object) -> int:
    pairs = headers if isinstance(headers, list | tuple) else ()
    return len(key or b"") + len(value or b"") + sum(len(k) + len(v or b"") for k, v in pairs)


async def _sample_memory(
    pids: dict[str, int], samples: dict[str, list[tuple[float, float]]], every: float, stop: asyncio.Event
) -> None:
    started = time.monotonic()
    while not stop.is_set():
        for name, pid in pids.items():
            samples.setdefault(name, []).append((time.monotonic() - started, memory_mib(pid)[0]))
        with_timeout = asyncio.create_task(stop.wait())
        await asyncio.wait([with_timeout], timeout=every)
        with_timeout.cancel()


async def run(env: Env, quick: bool) -> Outcome:
    plan = QUICK if quick else FULL
    now = datetime.now(UTC)
    total = round(plan.rate * plan.seconds)
    load = await asyncio.to_thread(load_payloads, total, now)
    probes = total // plan.probe_every
    patients, enrolments = probe_patients(probes, load[0], now)
    probed = ProbedLoad(load, patients, plan.probe_every)

    topics = env.fresh_topics("load", PARTITIONS)
    database = await env.fresh_database("load")
    fleet = Fleet(
        env.kafka_bootstrap, database, topics, env.logs("load"), f"rel-load-{env.run_id}", WORKER_ENV
    )
    figures = {"events": f"{total:,} at {plan.rate:.0f}/s for {plan.seconds:.0f} s", "probes": str(probes)}
    failures: list[str] = []
    stop = asyncio.Event()
    watchers: list[asyncio.Task[None]] = []
    try:
        workers = [fleet.start(), fleet.start()]
        await healthy(workers)
        # Probe patients enrolled first; their events in the log prove both workers consume.
        warm = PacedStream(env.kafka_bootstrap, topics.events_topic, enrolments, rate=5000).start()
        await warm.wait(120)
        if not await until_logged(database, len(enrolments), within=120):
            failures.append("the probe patients' enrolments were not all applied within 120 s")
        pids = {f"worker {i + 1}": w.process.pid for i, w in enumerate(workers)}
        recorded = env.runtime.read() if env.runtime is not None else None
        if recorded is not None:
            pids["broker"] = recorded.broker_pid
        memory: dict[str, list[tuple[float, float]]] = {}
        in_postgres: dict[str, float] = {}
        on_topic: dict[str, float] = {}
        alert_bytes = [0]
        watchers = [
            asyncio.create_task(_watch_postgres(database, probed, in_postgres, stop)),
            asyncio.create_task(
                _watch_topic(env.kafka_bootstrap, topics.alerts_topic, on_topic, stop, alert_bytes)
            ),
            asyncio.create_task(_sample_memory(pids, memory, plan.rss_every, stop)),
        ]
        stream = PacedStream(env.kafka_bootstrap, topics.events_topic, probed, plan.rate, count=total).start()
        await stream.wait(plan.seconds + 120)
        if stream.failure is not None:
            failures.append(f"publishing failed: {stream.failure!r}")
        figures["achieved rate"] = f"{total / stream.seconds:.0f}/s" if stream.seconds else "n/a"
        drained = time.monotonic()
        if not await until_logged(database, len(enrolments) + total, within=300):
            logged, _ = await counts(database)
            failures.append(
                f"only {logged:,} of {len(enrolments) + total:,} events logged 300 s after the load"
            )
        figures["backlog drained"] = f"{time.monotonic() - drained:.1f} s after the last send"
        await until(lambda: len(on_topic) >= len(probed.sent_at), within=30)
        stop.set()
        await asyncio.gather(*watchers)

        for label, seen in (
            ("publish → alert row", in_postgres),
            ("publish → alert event on topic", on_topic),
        ):
            delays = sorted(seen[p] - probed.sent_at[p] for p in probed.sent_at if p in seen)
            missing = len(probed.sent_at) - len(delays)
            if missing:
                failures.append(f"{missing} of {len(probed.sent_at)} probes without {label.split('→ ')[1]}")
            if delays:
                ms = {q: percentile(delays, q) * 1000 for q in (50, 95, 99)}
                figures[label] = (
                    f"p50 {ms[50]:,.0f} ms, p95 {ms[95]:,.0f} ms, p99 {ms[99]:,.0f} ms,"
                    f" max {delays[-1] * 1000:,.0f} ms ({len(delays)} samples)"
                )
        for name, samples in memory.items():
            if len(samples) < 2:
                continue
            after_warm_up = samples[len(samples) // 3 :]
            slope = slope_per_minute(after_warm_up)
            figures[f"RSS {name}"] = (
                f"{samples[0][1]:.0f} → {samples[-1][1]:.0f} MiB, slope after warm-up {slope:+.2f} MiB/min"
            )
            if plan.max_rss_slope is not None and name.startswith("worker") and slope > plan.max_rss_slope:
                failures.append(f"{name} RSS grows {slope:+.2f} MiB/min after the warm-up")
        if "broker" in memory and len(memory["broker"]) >= 2:
            # Not a leak test: Tansu's memory storage holds every record (no retention, no disk), so it
            # must grow with what is appended, and by no more than a bounded factor of it.
            event_bytes = sum(_record_bytes(json.loads(p)["subject"].encode(), p, ()) for p in load[:total])
            appended_mib = (event_bytes + alert_bytes[0]) / 2**20
            grown = memory["broker"][-1][1] - memory["broker"][0][1]
            ratio = grown / appended_mib if appended_mib else float("nan")
            figures["broker growth per byte appended"] = (
                f"{grown:.0f} MiB for {appended_mib:.0f} MiB of records appended (events and alert"
                f" events): {ratio:.2f} times"
            )
            limit = plan.max_broker_growth_per_appended
            if limit is not None and ratio > limit:
                failures.append(f"the broker grew {ratio:.2f} times the bytes appended to it (limit {limit})")
        async with _connected(database) as connection:
            dead = await connection.fetchval("SELECT count(*) FROM dead_letters")
        figures["dead letters"] = str(dead)
        if dead:
            failures.append(f"{dead} dead letters from valid input")
        failures += [f"a worker exited: {c[:500]}" for c in fleet.crashed()]
    finally:
        stop.set()
        for task in watchers:
            task.cancel()
        failures += fleet.stop_all()
    return Outcome.of(NAME, figures, failures)


async def until_logged(database_url: str, expected: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        logged, _ = await counts(database_url)
        if logged >= expected:
            return True
        await asyncio.sleep(0.5)
    return False


class _connected:
    """``async with _connected(url) as connection``: one connection, closed after."""

    def __init__(self, url: str) -> None:
        self._url = url

    async def __aenter__(self) -> asyncpg.Connection:
        self._connection: asyncpg.Connection = await asyncpg.connect(self._url)
        return self._connection

    async def __aexit__(self, *_exc: object) -> None:
        await self._connection.close()

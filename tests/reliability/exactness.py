"""What the fault scenarios share: a fleet of real workers, a paced stream of a cohort, and the one
standard every fault is held to afterwards.

The standard (issue 6): the state of every patient equals the pure ``replay`` of the events; the
event log holds each event once and no event was applied twice; every alert is in Postgres once and
equals what the offline backtest (``run_backtest`` on the stream clock) raises, field by field, with
the same lifecycle changes; and every alert event of the outbox is on the alerts topic (duplicates
allowed there: consumers dedupe by the CloudEvent id, and the figures say how many there were).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from kafka.partitioner.default import murmur2

from iopcare.contract import InboundEvent, decode_event, encode_event
from iopcare.domain.alerts import Alert
from iopcare.domain.backtest import run_backtest
from iopcare.domain.engagement import PatientState
from iopcare.domain.intake import replay
from iopcare.publish import EventPublisher
from iopcare.rulepacks import DEFAULT_PACK
from iopcare.settings import Settings
from iopcare.simulation import generate_cohort
from iopcare.store.engagement import EngagementStore
from tests.comparisons import ALERT_FIELDS, state_differences
from tests.integration.workers import WorkerProcess
from tests.reliability.harness import Env

# The stream clock makes the outcome deterministic; frequent sweeps make it settle quickly.
STREAM_CLOCK = {"IOPCARE_CLOCK": "stream", "IOPCARE_SWEEP_INTERVAL_SECONDS": "0.5"}


# -- the cohort and what it must end as ------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    """A cohort in publishing order and what the processor must converge to."""

    events: list[InboundEvent]
    payloads: list[bytes]
    states: dict[str, PatientState]
    alerts: dict[str, Alert]
    changes: Counter[str]  # alert lifecycle changes by kind
    until: datetime  # where the stream clock ends

    @property
    def distinct(self) -> int:
        return len({(e.source, e.id) for e in self.events})


def cohort(patients: int, seed: int, partitions: int) -> list[InboundEvent]:
    """A 90-day cohort that ended yesterday, in (time, id) order (the order it is published in),
    closed by one enrolment per partition at the cohort's last event time.

    Why the closing events: the processor's stream clock is the least, over partitions, of the latest
    event time, so a partition whose patients fell silent (a dropout) holds it back, and checks and
    escalations due after that never fire in the live run; the backtest's clock is the latest event
    time of the whole stream. One event per partition at the end brings both clocks to the same time.
    """
    events = generate_cohort(patients, seed=seed, start=date.today() - timedelta(days=91))
    events.sort(key=lambda e: (e.time, e.id))
    template = json.loads(encode_event(next(e for e in events if e.type == "iop.patient.enrolled")))
    end = events[-1].time
    closing: dict[int, InboundEvent] = {}
    for n in itertools.count():
        subject = f"rel-close-{seed}-{n}"
        partition = partition_of(subject, partitions)
        if partition not in closing:
            wire = dict(template, id=f"rel-close-{seed}-{n}", subject=subject, time=end.isoformat())
            closing[partition] = decode_event(json.dumps(wire).encode(), key=subject.encode())
        if len(closing) == partitions:
            break
    return events + [closing[p] for p in sorted(closing)]


def partition_of(key: str, partitions: int) -> int:
    """The partition the producer's default partitioner (murmur2 of the key) picks."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def watermark(events: Sequence[InboundEvent], partitions: int) -> datetime:
    """Where the processor's stream clock ends: the least, over partitions, of the latest event time
    (the producer's default partitioner: murmur2 of the key)."""
    latest: dict[int, datetime] = {}
    for event in events:
        partition = partition_of(event.subject, partitions)
        latest[partition] = max(latest.get(partition, event.time), event.time)
    return min(latest.values())


def expect(events: list[InboundEvent], partitions: int) -> Expected:
    """The pure replay and the offline backtest of ``events`` (CPU-bound: call it in a thread)."""
    until = watermark(events, partitions)
    backtest = run_backtest(events, DEFAULT_PACK, until=until)
    return Expected(
        events=events,
        payloads=[encode_event(e) for e in events],
        states=replay(events),
        alerts=backtest.alerts,
        changes=backtest.changes,
        until=until,
    )


# -- workers -----------------------------------------------------------------------------------


class Fleet:
    """``iopcare worker`` processes of one consumer group, started, killed and stopped on demand.

    Every process gets a log of its own (``worker-<slot>-<n>.log``); ``exits`` records how each one
    ended, so a scenario can tell the exits it caused from the ones it did not.
    """

    def __init__(
        self, kafka: str, database_url: str, topics: Settings, log_dir: Path, app_id: str, env: dict[str, str]
    ) -> None:
        self._args = (kafka, database_url, topics, log_dir)
        self.app_id = app_id
        self._env = env
        self.live: list[WorkerProcess] = []
        self.every: list[WorkerProcess] = []
        self.started = 0
        self.exits: list[tuple[str, int]] = []  # (log name, exit code) of every process that ended

    def start(self) -> WorkerProcess:
        self.started += 1
        kafka, database_url, topics, log_dir = self._args
        worker = WorkerProcess(
            kafka, database_url, topics, log_dir, self.app_id, name=f"{self.started:02d}", extra_env=self._env
        )
        self.live.append(worker)
        self.every.append(worker)
        return worker

    def kill(self, worker: WorkerProcess) -> None:
        """kill -9: no shutdown, no ack, no commit of what is in flight."""
        worker.process.kill()
        worker.process.wait()
        self._ended(worker)

    def stop(self, worker: WorkerProcess) -> int:
        """SIGTERM and wait: a graceful leave (the batch in flight finishes)."""
        worker.stop()
        return self._ended(worker)

    def _ended(self, worker: WorkerProcess) -> int:
        code = worker.stop()  # closes the log; the process is already gone
        self.live.remove(worker)
        self.exits.append((worker.log_path.name, code))
        return code

    def crashed(self) -> list[str]:
        """Processes that exited on their own (not killed or stopped by the scenario)."""
        return [
            f"{w.log_path.name} exited with {w.process.returncode}: {w.log()[-1500:]}"
            for w in self.live
            if w.process.poll() is not None
        ]

    def stop_all(self) -> list[str]:
        """Stop every live worker; returns the ones that did not exit cleanly."""
        problems = self.crashed()
        for worker in list(self.live):
            if worker.process.poll() is None:
                code = self.stop(worker)
                if code not in (0, -15):
                    problems.append(f"{worker.log_path.name} stopped with {code}: {worker.log()[-1500:]}")
            else:
                self._ended(worker)
        # Faust restarts a crashed agent past the batch it was handling: a crash is a failure even
        # when the process lives on.
        for worker in self.every:
            crashes = worker.log().count("Crashed reason=")
            if crashes:
                problems.append(f"{worker.log_path.name}: the agent crashed {crashes} time(s)")
        return problems


async def healthy(workers: Sequence[WorkerProcess], within: float = 90) -> None:
    await asyncio.gather(*(w.wait_healthy(within) for w in workers))


# -- the stream --------------------------------------------------------------------------------


class PacedStream:
    """Publishes payloads at a steady rate from a thread (the SDK's producer: acks=all, keyed by
    patient, in order per patient). ``sent`` counts events handed to the producer so far."""

    def __init__(
        self, kafka: str, topic: str, payloads: Iterable[bytes], rate: float, count: int | None = None
    ) -> None:
        self.count = len(payloads) if count is None and isinstance(payloads, Sized) else count
        self.sent = 0
        self.failure: BaseException | None = None
        self.finished_at: float | None = None  # time.monotonic() once every event was acknowledged
        self.seconds = 0.0
        self._thread = threading.Thread(
            target=self._run, args=(kafka, topic, payloads, rate), name="paced-stream", daemon=True
        )

    def start(self) -> PacedStream:
        self._thread.start()
        return self

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def _paced(self, payloads: Iterable[bytes], rate: float) -> Iterator[tuple[int, bytes]]:
        started = time.monotonic()
        for index, payload in enumerate(payloads):
            delay = started + index / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.sent = index + 1
            yield index + 1, payload

    def _run(self, kafka: str, topic: str, payloads: Iterable[bytes], rate: float) -> None:
        started = time.monotonic()
        try:
            with EventPublisher(kafka, topic) as publisher:
                report = publisher.publish_all(self._paced(payloads, rate))
            if not report.ok or report.sent != self.count:
                raise RuntimeError(
                    f"{report.sent} of {self.count} acknowledged: {report.invalid[:3]} {report.failed[:3]}"
                )
        except BaseException as exc:  # reported by the scenario
            self.failure = exc
        self.finished_at = time.monotonic()
        self.seconds = self.finished_at - started

    async def wait(self, within: float) -> bool:
        """Until every event was acknowledged (or publishing failed); False after ``within`` seconds."""
        return await until(lambda: self.done, within)


# -- waiting for the outcome ---------------------------------------------------------------------


async def until(condition: Callable[[], bool], within: float, every: float = 0.1) -> bool:
    """Poll ``condition`` until it holds (True) or ``within`` seconds passed (False)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        await asyncio.sleep(every)
    return condition()


async def counts(database_url: str) -> tuple[int, int]:
    """(event_log rows, sum of events_applied): both reach the distinct events when all is done."""
    connection = await asyncpg.connect(database_url)
    try:
        row = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM event_log) AS logged,"
            " (SELECT coalesce(sum(events_applied), 0) FROM patient_state) AS applied"
        )
    finally:
        await connection.close()
    assert row is not None
    return int(row["logged"]), int(row["applied"])


async def wait_processed(
    database_url: str, distinct: int, within: float, check: Callable[[], None] = lambda: None
) -> bool:
    """Poll until every distinct event is logged and applied; ``check`` may raise to give up early."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        check()
        logged, applied = await counts(database_url)
        if logged >= distinct and applied >= distinct:
            return True
        await asyncio.sleep(0.25)
    return False


async def settle(database_url: str, until: datetime, within: float) -> str | None:
    """Wait until the sweeps fired every check and escalation due by ``until`` and the relay published
    every alert event; returns what is still pending after ``within`` seconds, or None."""
    connection = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + within
        while True:
            row = await connection.fetchrow(
                "SELECT (SELECT count(*) FROM absence_checks WHERE fired_at IS NULL AND due_at <= $1)"
                " AS checks,"
                " (SELECT count(*) FROM alerts WHERE state = 'open' AND escalate_at <= $1) AS escalations,"
                " (SELECT count(*) FROM outbox WHERE published_at IS NULL AND kind LIKE 'iop.alert.%')"
                " AS unpublished",
                until,
            )
            assert row is not None
            if not any(row.values()):
                return None
            if time.monotonic() > deadline:
                return (
                    ", ".join(f"{v} {k}" for k, v in row.items() if v) + f" still pending after {within:.0f}s"
                )
            await asyncio.sleep(0.25)
    finally:
        await connection.close()


async def alert_event_ids(kafka: str, topic: str, partitions: int, within: float = 60) -> list[str]:
    """The CloudEvent id of every record on the alerts topic, duplicates included."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=100
    )
    await consumer.start()
    ids: list[str] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            positions = [await consumer.position(tp) for tp in tps]
            if all(position >= end[tp] for position, tp in zip(positions, tps, strict=True)):
                break
            for records in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                ids.extend(json.loads(record.value)["id"] for record in records)
    finally:
        await consumer.stop()
    return ids


# -- the standard --------------------------------------------------------------------------------


@dataclass
class Verdict:
    failures: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)


async def verify(
    database_url: str, kafka: str, topics: Settings, expected: Expected, *, within: float = 120
) -> Verdict:
    """Wait for the stream to settle, then hold the result to the standard (module docstring)."""
    verdict = Verdict()
    failures = verdict.failures
    pending = await settle(database_url, expected.until, within)
    if pending:
        failures.append(f"not settled: {pending}")
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert pool is not None
    try:
        states = await EngagementStore(pool).load_states()
        async with pool.acquire() as connection:
            logged = await connection.fetch("SELECT source, event_id FROM event_log")
            applied = await connection.fetchval("SELECT coalesce(sum(events_applied), 0) FROM patient_state")
            dead = await connection.fetchval("SELECT count(*) FROM dead_letters")
            alerts = await connection.fetch("SELECT * FROM alerts")
            changes = await connection.fetch(
                "SELECT kind, count(*) AS n FROM alert_transitions GROUP BY kind"
            )
            outbox_ids = await connection.fetch(
                "SELECT payload->>'id' AS id FROM outbox WHERE kind LIKE 'iop.alert.%'"
            )
    finally:
        await pool.close()

    differing = state_differences(states, expected.states)
    if differing:
        failures.append(f"{len(differing)} patient states differ from the replay, e.g. {differing[:3]}")
    distinct = {(e.source, e.id) for e in expected.events}
    in_log = [(r["source"], r["event_id"]) for r in logged]
    if len(in_log) != len(distinct) or set(in_log) != distinct:
        failures.append(f"event_log has {len(in_log)} rows for {len(distinct)} distinct events")
    if applied != len(distinct):
        failures.append(f"events_applied sums to {applied} for {len(distinct)} distinct events")
    if dead:
        failures.append(f"{dead} dead letters from valid input")

    live = {
        row["dedup_key"]: {f: row[f] for f in ALERT_FIELDS} | {"event_ids": tuple(row["event_ids"])}
        for row in alerts
    }
    wanted = {
        key: {f: getattr(alert, f) for f in ALERT_FIELDS} | {"event_ids": alert.event_ids}
        for key, alert in expected.alerts.items()
    }
    if sorted(live) != sorted(wanted):
        failures.append(
            f"alerts: {len(live.keys() - wanted.keys())} not in the backtest, "
            f"{len(wanted.keys() - live.keys())} missing (of {len(wanted)})"
        )
    differ = [key for key in wanted.keys() & live.keys() if live[key] != wanted[key]]
    if differ:
        key = differ[0]
        fields = {f: (live[key][f], wanted[key][f]) for f in wanted[key] if live[key][f] != wanted[key][f]}
        failures.append(f"{len(differ)} alerts differ from the backtest, e.g. {key}: {fields}")
    live_changes = Counter({row["kind"]: int(row["n"]) for row in changes})
    if live_changes != expected.changes:
        failures.append(
            f"alert transitions by kind {dict(live_changes)} != backtest {dict(expected.changes)}"
        )

    on_topic = await alert_event_ids(kafka, topics.alerts_topic, topics.topic_partitions)
    published = {row["id"] for row in outbox_ids}
    missing = published - set(on_topic)
    if missing:
        failures.append(
            f"{len(missing)} of {len(published)} outbox alert events not on {topics.alerts_topic}"
        )
    verdict.figures.update(
        {
            "alerts": f"{len(live):,} (backtest {len(wanted):,})",
            "alert events on the topic": f"{len(on_topic):,} records, {len(set(on_topic)):,} distinct",
            "topic duplicates": f"{len(on_topic) - len(set(on_topic)):,}",
        }
    )
    return verdict


@dataclass(frozen=True)
class Stage:
    """What a fault scenario runs on: the cohort's expected outcome, and fresh topics, database and
    stream-clock workers of its own."""

    expected: Expected
    topics: Settings
    database: str
    fleet: Fleet


async def stage(env: Env, label: str, patients: int, seed: int, partitions: int) -> Stage:
    expected = await asyncio.to_thread(expect, cohort(patients, seed=seed, partitions=partitions), partitions)
    topics = env.fresh_topics(label, partitions)
    database = await env.fresh_database(label)
    fleet = Fleet(
        env.kafka_bootstrap, database, topics, env.logs(label), f"rel-{label}-{env.run_id}", STREAM_CLOCK
    )
    return Stage(expected, topics, database, fleet)


async def finish_stream(
    stream: PacedStream,
    fleet: Fleet,
    database_url: str,
    distinct: int,
    rate: float,
    stream_within: float,
    within: float,
    figures: dict[str, str],
    failures: list[str],
) -> bool:
    """Wait up to ``stream_within`` for the stream to end, then up to ``within`` for every distinct
    event to be processed (giving up early if a worker exits on its own); records the catch-up and
    stream figures, or the failure. False when publishing failed."""
    await stream.wait(within=stream_within)
    if stream.failure is not None or stream.finished_at is None:
        failures.append(f"publishing failed: {stream.failure!r}")
        return False

    def no_crash() -> None:
        crashed = fleet.crashed()
        if crashed:
            raise RuntimeError(f"a worker exited on its own: {crashed[0]}")

    if not await wait_processed(database_url, distinct, within, no_crash):
        failures.append(f"not caught up in {within:.0f}s")
    figures["time to catch up"] = f"{time.monotonic() - stream.finished_at:.1f} s after the stream ended"
    figures["stream"] = f"{stream.seconds:.0f} s at {rate:.0f}/s"
    return True

"""Exactly-once *effect* at cohort scale: real broker, real Postgres, real `iopcare worker` processes.

Every test streams the same synthetic cohort (~20,000 events, 80 patients over 90 days) and holds
the processor to one standard: the state of every patient in Postgres equals the pure
``replay(events)`` of the time-ordered events, and ``event_log`` holds each distinct event once,
whatever the delivery did (duplicates, a second delivery of everything, arrival out of order within
the lateness window, poison records between valid ones, partitions split between two workers).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from kafka import KafkaProducer

from iopcare.contract import InboundEvent, encode_event
from iopcare.domain.engagement import DEFAULT_TUNING, PatientState
from iopcare.domain.intake import replay
from iopcare.endpoints import Endpoints
from iopcare.publish import EventPublisher
from iopcare.settings import Settings
from iopcare.simulation import generate_cohort
from iopcare.store.engagement import EngagementStore
from iopcare.topics import ensure_topics
from tests.comparisons import state_differences
from tests.integration.workers import WorkerProcess, wait_for_count

pytestmark = pytest.mark.integration

PATIENTS = 82  # ~240 events each over 90 days (dropouts fewer): ~20,000 events
SEED = 20_000
PROCESSED = "iopcare_events_processed_total"


@pytest.fixture(scope="module")
def cohort() -> list[InboundEvent]:
    """The cohort, in event-time order, ending yesterday (the worker refuses events from the future)."""
    start = datetime.now(UTC).date() - timedelta(days=91)
    events: list[InboundEvent] = generate_cohort(PATIENTS, seed=SEED, start=start)
    assert 19_000 <= len(events) <= 21_000
    return events


@pytest.fixture(scope="module")
def expected(cohort: list[InboundEvent]) -> dict[str, PatientState]:
    """What the processor must converge to: the pure replay of the time-ordered cohort."""
    states = replay(cohort)
    assert len(states) == PATIENTS
    assert sum(s.late_events for s in states.values()) == 0
    return states


# --- helpers --------------------------------------------------------------------------------


def _publish(kafka: str, topic: str, events: Sequence[InboundEvent]) -> None:
    """Send in this order (keyed by patient: each patient's events stay in order in one partition)."""
    with EventPublisher(kafka, topic) as publisher:
        report = publisher.publish_all(enumerate(encode_event(e) for e in events))
    assert report.ok and report.sent == len(events), (report.invalid[:3], report.failed[:3])


def _with_interleaved_duplicates(
    events: Sequence[InboundEvent], share: float, rng: random.Random
) -> tuple[list[InboundEvent], int]:
    """The events, each of a random ``share`` followed by a second copy: right behind it, or a few
    hundred to a few thousand records later (so some copies meet their original in one batch and
    others come back after it was committed). Returns the stream and the number of copies."""
    keyed = [(float(i), e) for i, e in enumerate(events)]
    copies = rng.sample(range(len(events)), int(len(events) * share))
    for i in copies:
        distance = rng.choice((0.5, 0.5, rng.randint(1, 300) + 0.5, rng.randint(300, 5000) + 0.5))
        keyed.append((i + distance, events[i]))
    keyed.sort(key=lambda pair: pair[0])
    return [e for _, e in keyed], len(copies)


def _shuffled_within(
    events: Sequence[InboundEvent], window: timedelta, rng: random.Random
) -> list[InboundEvent]:
    """Events in the order of (event time + a random delay below ``window``): any two events of a
    patient swap places only when they are less than ``window`` apart in event time."""
    keyed = [
        (e.time + timedelta(seconds=rng.uniform(0, window.total_seconds())), i, e)
        for i, e in enumerate(events)
    ]
    return [e for _, _, e in sorted(keyed, key=lambda k: (k[0], k[1]))]


def _inversions_per_patient(stream: Sequence[InboundEvent]) -> dict[str, int]:
    """How many adjacent pairs of each patient's stream are out of event-time order."""
    last: dict[str, datetime] = {}
    inversions: dict[str, int] = {}
    for event in stream:
        previous = last.get(event.subject)
        inversions[event.subject] = inversions.get(event.subject, 0) + (
            previous is not None and event.time < previous
        )
        last[event.subject] = event.time
    return inversions


async def _wait_until_processed(
    database_url: str, events: Sequence[InboundEvent], within: float = 120
) -> None:
    """Until every distinct event is in the event log and folded into a state (one transaction)."""
    distinct = len({(e.source, e.id) for e in events})
    assert await wait_for_count(database_url, "SELECT count(*) FROM event_log", distinct, within) == distinct
    applied = await wait_for_count(
        database_url, "SELECT coalesce(sum(events_applied), 0) FROM patient_state", distinct, within
    )
    assert applied == distinct


async def _assert_converged(
    database_url: str,
    events: Sequence[InboundEvent],
    expected: dict[str, PatientState],
    dead_letters: int = 0,
) -> None:
    """State of every patient == the replay; event log == the distinct events; so many dead letters."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        assert state_differences(await EngagementStore(pool).load_states(), expected) == []
        async with pool.acquire() as connection:
            logged = await connection.fetch("SELECT source, event_id, patient_id, event_type FROM event_log")
            columns = await connection.fetch(
                "SELECT patient_id, counselor_id, level_of_care, high_water, last_checkin_at, events_applied,"
                " late_events FROM patient_state"
            )
            dead = await connection.fetchval("SELECT count(*) FROM dead_letters")
    finally:
        await pool.close()
    distinct = {(e.source, e.id, e.subject, e.type) for e in events}
    assert len(logged) == len(distinct)
    assert {tuple(row) for row in logged} == distinct
    # The query columns agree with the state document they are derived from.
    assert {row["patient_id"]: tuple(row)[1:] for row in columns} == {
        s.patient_id: (
            s.enrollment.counselor_id if s.enrollment else None,
            s.level_of_care,
            s.high_water,
            s.last_checkin_at,
            s.events_applied,
            s.late_events,
        )
        for s in expected.values()
    }
    assert dead == dead_letters


async def _snapshot(database_url: str) -> tuple[list[tuple[object, ...]], int, int]:
    """Every patient_state row as stored (updated_at included), event_log and dead_letters counts."""
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT * FROM patient_state ORDER BY patient_id")
        logged = await connection.fetchval("SELECT count(*) FROM event_log")
        dead = await connection.fetchval("SELECT count(*) FROM dead_letters")
    finally:
        await connection.close()
    return [tuple(r) for r in rows], logged, dead


# --- tests ----------------------------------------------------------------------------------


async def test_cohort_of_20000_events_converges_to_the_pure_replay(
    endpoints: Endpoints,
    topics: Settings,
    clean_db: str,
    worker: WorkerProcess,
    cohort: list[InboundEvent],
    expected: dict[str, PatientState],
) -> None:
    _publish(endpoints.kafka_bootstrap, topics.events_topic, cohort)
    await _wait_until_processed(clean_db, cohort)
    await _assert_converged(clean_db, cohort, expected)
    assert await worker.metric(PROCESSED, outcome="applied") == len(cohort)
    assert await worker.metric(PROCESSED, outcome="duplicate") == 0


async def test_redelivering_every_event_changes_nothing(
    endpoints: Endpoints,
    topics: Settings,
    clean_db: str,
    worker: WorkerProcess,
    cohort: list[InboundEvent],
    expected: dict[str, PatientState],
) -> None:
    # First delivery with duplicates interleaved (a producer retrying, a connector replaying).
    stream, copies = _with_interleaved_duplicates(cohort, 0.1, random.Random(SEED))
    assert copies > 1000
    _publish(endpoints.kafka_bootstrap, topics.events_topic, stream)
    await _wait_until_processed(clean_db, cohort)
    assert await worker.wait_for_metric(PROCESSED, copies, outcome="duplicate") == copies
    await _assert_converged(clean_db, cohort, expected)
    before = await _snapshot(clean_db)

    # Then every event a second time (a partition replayed from the start).
    _publish(endpoints.kafka_bootstrap, topics.events_topic, cohort)
    duplicates = await worker.wait_for_metric(PROCESSED, copies + len(cohort), outcome="duplicate")
    assert duplicates == copies + len(cohort)
    assert await _snapshot(clean_db) == before  # not one state row rewritten
    assert await worker.metric(PROCESSED, outcome="applied") == len(cohort)
    await _assert_converged(clean_db, cohort, expected)


async def test_shuffled_arrival_within_the_lateness_window_gives_the_same_state(
    endpoints: Endpoints,
    topics: Settings,
    clean_db: str,
    worker: WorkerProcess,
    cohort: list[InboundEvent],
    expected: dict[str, PatientState],
) -> None:
    window = DEFAULT_TUNING.lateness - timedelta(hours=1)
    shuffled = _shuffled_within(cohort, window, random.Random(SEED))
    inversions = _inversions_per_patient(shuffled)
    assert all(count > 20 for count in inversions.values()), "every patient's stream is out of order"
    assert sum(inversions.values()) > len(cohort) // 5

    _publish(endpoints.kafka_bootstrap, topics.events_topic, shuffled)
    await _wait_until_processed(clean_db, cohort)
    # Equal to the replay of the time-ordered events, late_events (0) included.
    await _assert_converged(clean_db, cohort, expected)
    assert await worker.metric("iopcare_late_events_total") == 0


def _poison_before(event: InboundEvent, stranger: InboundEvent, kind: int) -> tuple[bytes, str]:
    """A record that must be dead-lettered, to be sent on ``event``'s partition just before it.
    Three of the five carry ``event``'s own idempotency key: were one of them logged, the valid
    event behind it would be taken for a duplicate and never applied."""
    wire = json.loads(encode_event(event))
    variants: list[tuple[bytes, str]] = [
        (json.dumps(dict(wire, unexpected=1)).encode(), "schema_violation"),
        (
            json.dumps(dict(wire, time=(datetime.now(UTC) + timedelta(days=3)).isoformat())).encode(),
            "future_time",
        ),
        (encode_event(event)[:-1], "invalid_json"),
        (encode_event(stranger), "key_mismatch"),  # another patient's event under this key
        (b"\xff" + encode_event(event), "undecodable"),
    ]
    return variants[kind % len(variants)]


async def test_poison_between_a_patients_valid_events_leaves_every_valid_event_applied(
    endpoints: Endpoints,
    topics: Settings,
    clean_db: str,
    worker: WorkerProcess,
    cohort: list[InboundEvent],
    expected: dict[str, PatientState],
) -> None:
    # A quarter of the patients is enough here (poison needs no scale) and keeps the module short.
    patients = set(sorted(expected)[: PATIENTS // 4])
    events = [e for e in cohort if e.subject in patients]
    rng = random.Random(SEED)
    poisoned = set(rng.sample(range(len(events)), len(events) // 20))
    first_events = list({e.subject: e for e in reversed(cohort)}.values())
    records: list[tuple[bytes, bytes]] = []
    reasons: Counter[str] = Counter()
    for index, event in enumerate(events):
        if index in poisoned:
            stranger = rng.choice([e for e in first_events if e.subject != event.subject])
            value, reason = _poison_before(event, stranger, rng.randrange(5))
            records.append((event.subject.encode(), value))
            reasons[reason] += 1
        records.append((event.subject.encode(), encode_event(event)))
    producer = KafkaProducer(
        bootstrap_servers=endpoints.kafka_bootstrap,
        acks="all",
        linger_ms=5,
        max_in_flight_requests_per_connection=1,
    )
    try:
        for key, value in records:
            producer.send(topics.events_topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()

    await _wait_until_processed(clean_db, events)
    poison = sum(reasons.values())
    assert await wait_for_count(clean_db, "SELECT count(*) FROM dead_letters", poison) == poison
    connection = await asyncpg.connect(clean_db)
    try:
        rows = await connection.fetch("SELECT reason, count(*) AS n FROM dead_letters GROUP BY reason")
    finally:
        await connection.close()
    assert {row["reason"]: row["n"] for row in rows} == reasons
    await _assert_converged(clean_db, events, {p: expected[p] for p in patients}, dead_letters=poison)
    assert await worker.metric(PROCESSED, outcome="applied") == len(events)
    assert await worker.metric(PROCESSED, outcome="dead_lettered") == poison


@pytest.fixture
def eight_partitions(endpoints: Endpoints, unique_topics: Settings) -> Settings:
    """Topics of this test's own with 8 partitions, created on the broker."""
    settings = unique_topics.model_copy(update={"topic_partitions": 8})
    ensure_topics(endpoints.kafka_bootstrap, settings)
    return settings


@pytest.fixture
def two_workers(
    endpoints: Endpoints, eight_partitions: Settings, clean_db: str, tmp_path: Path
) -> Iterator[tuple[WorkerProcess, WorkerProcess]]:
    """Two workers with one app id: one consumer group sharing the 8 partitions."""
    app_id = f"test-processor-{uuid.uuid4().hex[:6]}"
    kafka = endpoints.kafka_bootstrap
    pair = (
        WorkerProcess(kafka, clean_db, eight_partitions, tmp_path, app_id=app_id, name="w1"),
        WorkerProcess(kafka, clean_db, eight_partitions, tmp_path, app_id=app_id, name="w2"),
    )
    yield pair
    codes = [w.stop() for w in pair]
    assert all(code in (0, -15) for code in codes), [w.log()[-3000:] for w in pair]


async def _stable_members(kafka: str, group: str) -> int:
    """Members of the consumer group once the broker reports it Stable (assignment done), else 0."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka, client_id="iopcare-test-admin")
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
    finally:
        await admin.close()
    # (error_code, group, state, protocol_type, protocol, members, ...): later versions only append.
    group = response.groups[0]
    state, members = group[2], group[5]
    return len(members) if state == "Stable" else 0


async def test_two_workers_split_the_partitions_and_the_result_is_exact(
    endpoints: Endpoints,
    eight_partitions: Settings,
    clean_db: str,
    two_workers: tuple[WorkerProcess, WorkerProcess],
    cohort: list[InboundEvent],
    expected: dict[str, PatientState],
) -> None:
    await asyncio.gather(*(w.wait_healthy() for w in two_workers))
    deadline = time.monotonic() + 60
    while await _stable_members(endpoints.kafka_bootstrap, two_workers[0].app_id) != 2:
        assert time.monotonic() < deadline, "the two workers did not form one stable group"
        await asyncio.sleep(0.25)
    await asyncio.sleep(1)  # let both workers act on their assignment (seek, start fetching)

    _publish(endpoints.kafka_bootstrap, eight_partitions.events_topic, cohort)
    await _wait_until_processed(clean_db, cohort)
    await _assert_converged(clean_db, cohort, expected)
    shares = [await w.metric(PROCESSED, outcome="applied") for w in two_workers]
    assert sum(shares) == len(cohort)  # each event applied once, by one of them
    assert all(share > 0 for share in shares), shares

"""The stream clock waits for every partition: one not yet consumed holds it back like a lagging one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from kafka.partitioner.default import murmur2

from iopcare.contract import InboundEvent
from iopcare.contract.examples import example_event
from iopcare.endpoints import Endpoints
from iopcare.publish import EventPublisher
from iopcare.settings import Settings
from iopcare.store.engagement import EngagementStore
from iopcare.topics import ensure_topics
from tests.integration.workers import WorkerProcess, wait_for_count

pytestmark = pytest.mark.integration

MONDAY = datetime(2026, 3, 2, 9, tzinfo=UTC)
FRIDAY = datetime(2026, 3, 6, 9, tzinfo=UTC)


async def _progress(pool: asyncpg.Pool, highs: dict[int, datetime]) -> None:
    await pool.execute(
        "INSERT INTO stream_progress (kafka_partition, event_time_high) SELECT * FROM unnest($1::int[], "
        "$2::timestamptz[])",
        list(highs),
        list(highs.values()),
    )


async def test_a_partition_with_nothing_committed_holds_the_clock_back(pool: asyncpg.Pool) -> None:
    await _progress(pool, {0: FRIDAY, 1: FRIDAY})
    assert await EngagementStore(pool, clock="stream", partitions=3).stream_clock() is None
    await _progress(pool, {2: MONDAY})
    assert await EngagementStore(pool, clock="stream", partitions=3).stream_clock() == MONDAY


async def test_without_a_partition_count_the_clock_is_the_least_committed(pool: asyncpg.Pool) -> None:
    await _progress(pool, {0: FRIDAY, 1: MONDAY})
    assert await EngagementStore(pool, clock="stream").stream_clock() == MONDAY


async def test_a_worker_takes_the_partition_count_from_the_broker_not_the_setting(
    endpoints: Endpoints, unique_topics: Settings, clean_db: str, tmp_path: Path
) -> None:
    """The events topic was made with 2 partitions; IOPCARE_TOPIC_PARTITIONS says 4. A worker on the
    stream clock starts the clock once both real partitions have committed an event (with the setting
    it would wait for two partitions that do not exist, and no absence check would ever fire): the
    patient whose check-ins stopped gets the silence alert once the other partition's events pass
    its 48 hours."""
    two = unique_topics.model_copy(update={"topic_partitions": 2})
    ensure_topics(endpoints.kafka_bootstrap, two)
    quiet, busy = _on_partitions(2)
    start = datetime(2026, 11, 2, 9, tzinfo=UTC)
    events = [
        *_enrolled(quiet[0], start),
        *_enrolled(quiet[1], start + timedelta(days=3)),  # partition of `quiet`, 3 days on
        *_enrolled(busy, start + timedelta(days=3)),
    ]
    worker = WorkerProcess(
        endpoints.kafka_bootstrap,
        clean_db,
        unique_topics,  # topic_partitions=4: what the worker is told
        tmp_path,
        app_id=f"test-processor-{uuid.uuid4().hex[:6]}",
        # The group lag timer would correct a wrong count after a minute; the start must get it right.
        extra_env={
            "IOPCARE_CLOCK": "stream",
            "IOPCARE_SWEEP_INTERVAL_SECONDS": "0.5",
            "IOPCARE_GROUP_LAG_INTERVAL_SECONDS": "60",
        },
    )
    try:
        await worker.wait_healthy()
        with EventPublisher(endpoints.kafka_bootstrap, two.events_topic) as publisher:
            for event in events:
                publisher.publish(event)
        query = f"SELECT count(*) FROM alerts WHERE patient_id = '{quiet[0]}' AND rule_id = 'silence'"
        assert await wait_for_count(clean_db, query, 1, within=40) == 1
    finally:
        assert worker.stop() in (0, -15), worker.log()[-3000:]
    assert "the events topic has 2 partitions (IOPCARE_TOPIC_PARTITIONS says 4)" in worker.log()


def _on_partitions(partitions: int) -> tuple[list[str], str]:
    """Two patients on partition 0 and one on partition 1 (the producer's murmur2 partitioner)."""
    on: dict[int, list[str]] = {}
    for n in range(1000):
        patient = f"pt-clock-{n}"
        on.setdefault((murmur2(patient.encode()) & 0x7FFFFFFF) % partitions, []).append(patient)
        if len(on.get(0, [])) >= 2 and on.get(1):
            break
    return on[0][:2], on[1][0]


def _enrolled(patient: str, at: datetime) -> list[InboundEvent]:
    """An enrolment and a check-in at ``at``."""
    enrolled = example_event("iop.patient.enrolled")
    enrolled = enrolled.model_copy(
        update={
            "subject": patient,
            "id": f"enrolled-{patient}",
            "time": at,
            "data": enrolled.data.model_copy(update={"program_start": at.date()}),
        }
    )
    checkin = example_event("iop.checkin.submitted").model_copy(
        update={"subject": patient, "id": f"checkin-{patient}", "time": at + timedelta(hours=1)}
    )
    return [enrolled, checkin]

"""The processor end to end: real broker, real Postgres, real `iopcare worker` processes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import urllib.request
import uuid
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2
from prometheus_client.parser import text_string_to_metric_families

from iopcare.contract import EVENT_TYPES, InboundEvent, encode_event
from iopcare.contract.examples import example_event
from iopcare.domain.engagement import PatientState
from iopcare.domain.intake import Held, replay
from iopcare.endpoints import Endpoints
from iopcare.publish import EventPublisher
from iopcare.settings import Settings
from iopcare.store.engagement import EngagementStore
from iopcare.store.events import DEAD_LETTER_PREFIX_BYTES
from tests.integration.workers import WorkerProcess, read_topic, wait_for_count

pytestmark = pytest.mark.integration


def _events_for(patients: int) -> list[InboundEvent]:
    """Every event type for each patient, with distinct ids."""
    events: list[InboundEvent] = []
    for n in range(patients):
        for event_type in EVENT_TYPES:
            event = example_event(event_type)
            events.append(event.model_copy(update={"subject": f"p-{n:05d}", "id": f"{event.id}-{n}"}))
    return events


async def _states(database_url: str) -> dict[str, PatientState]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        return await EngagementStore(pool).load_states()
    finally:
        await pool.close()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def _publish(kafka: str, topic: str, events: list[InboundEvent]) -> None:
    with EventPublisher(kafka, topic) as publisher:
        for event in events:
            publisher.publish(event)


async def test_state_equals_the_pure_replay_and_redelivery_changes_nothing(
    endpoints: Endpoints, topics: Settings, clean_db: str, worker: WorkerProcess
) -> None:
    events = _events_for(20)
    _publish(endpoints.kafka_bootstrap, topics.events_topic, events)
    assert await wait_for_count(clean_db, "SELECT count(*) FROM event_log", len(events)) == len(events)

    held: dict[str, list[Held]] = {}
    expected = replay(events, quarantine=held)
    applied = sum(s.events_applied for s in expected.values())
    assert held, "the examples include family-therapy events from a provider without consent"
    assert applied == len(events) - sum(len(h) for h in held.values())
    assert (
        await wait_for_count(clean_db, "SELECT coalesce(sum(events_applied), 0) FROM patient_state", applied)
        == applied
    )
    assert await _states(clean_db) == expected
    still_held = "SELECT count(*) FROM quarantined_events WHERE released_at IS NULL"
    assert await wait_for_count(clean_db, still_held, 0) == sum(len(h) for h in held.values())

    # The same events delivered again (a producer retry, a replayed partition): nothing changes.
    _publish(endpoints.kafka_bootstrap, topics.events_topic, events)
    marker = example_event("iop.checkin.submitted").model_copy(update={"subject": "p-marker", "id": "marker"})
    _publish(endpoints.kafka_bootstrap, topics.events_topic, [marker])
    await wait_for_count(clean_db, "SELECT count(*) FROM patient_state WHERE patient_id = 'p-marker'", 1)
    # Each partition is processed in order, but the marker may share none with the duplicates:
    # wait until the consumer group has caught up with every partition.
    await wait_for_count(clean_db, "SELECT count(*) FROM event_log", len(events) + 1)
    states = await _states(clean_db)
    states.pop("p-marker")
    assert states == expected
    assert await wait_for_count(clean_db, "SELECT count(*) FROM event_log", 0) == len(events) + 1

    # Caught up: the worker reports zero lag on each of the topic's 4 partitions (measured every 5 s).
    exposition = ""
    for _ in range(40):
        exposition = await asyncio.to_thread(worker._get, "/metrics")
        lags = [
            sample
            for family in text_string_to_metric_families(exposition)
            for sample in family.samples
            if sample.name == "iopcare_consumer_lag_messages"
        ]
        if len(lags) == 4 and all(sample.value == 0 for sample in lags):
            break
        await asyncio.sleep(0.5)
    else:
        raise AssertionError(f"lag never reached 0 on 4 partitions: {lags}")
    assert "iopcare_consumer_lag_seconds 0.0" in exposition


async def test_poison_records_are_dead_lettered_and_the_rest_processed(
    endpoints: Endpoints, topics: Settings, clean_db: str, worker: WorkerProcess
) -> None:
    valid = _events_for(3)
    good_bytes = json.loads(encode_event(valid[0]))
    poison: list[tuple[bytes, bytes, str]] = [
        (b"p-00000", b"\xff\xfe\x00", "undecodable"),
        (b"p-00000", b"{not json", "invalid_json"),
        (b"p-00001", b"[1, 2]", "not_an_object"),
        (b"p-00001", json.dumps(dict(good_bytes, type="iop.no.such")).encode(), "unknown_type"),
        (b"p-00002", json.dumps(dict(good_bytes, data={"craving": 99})).encode(), "schema_violation"),
        (b"p-99999", encode_event(valid[1]), "key_mismatch"),
        (b"p-00000", json.dumps(dict(good_bytes, time="2099-01-01T00:00:00Z")).encode(), "future_time"),
        (b"p-00001", json.dumps(dict(good_bytes, data={"note": "x" * 300_000})).encode(), "oversized"),
        (b"p-00002", b'{"specversion": "1.0", "n": ' + b"7" * 5_000 + b"}", "invalid_json"),
    ]
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap, acks="all")
    try:
        # Interleave: valid, poison, valid, poison ... on the same patients' partitions.
        for index, event in enumerate(valid):
            producer.send(topics.events_topic, key=event.subject.encode(), value=encode_event(event))
            if index < len(poison):
                key, value, _ = poison[index]
                producer.send(topics.events_topic, key=key, value=value)
        producer.flush()
    finally:
        producer.close()

    assert await wait_for_count(clean_db, "SELECT count(*) FROM event_log", len(valid)) == len(valid)
    assert await wait_for_count(clean_db, "SELECT count(*) FROM dead_letters", len(poison)) == len(poison)
    connection = await asyncpg.connect(clean_db)
    try:
        rows = await connection.fetch(
            "SELECT reason, detail, payload, payload_bytes, payload_sha256 FROM dead_letters"
        )
    finally:
        await connection.close()
    assert sorted(r["reason"] for r in rows) == sorted(reason for _, _, reason in poison)
    # The table keeps a capped prefix, the size and the digest of the original (the topic has it all).
    assert {(bytes(r["payload"]), r["payload_bytes"], bytes(r["payload_sha256"])) for r in rows} == {
        (value[:DEAD_LETTER_PREFIX_BYTES], len(value), hashlib.sha256(value).digest())
        for _, value, _ in poison
    }
    assert max(len(r["payload"]) for r in rows) == DEAD_LETTER_PREFIX_BYTES
    assert "a number with too many digits" in {r["detail"] for r in rows}
    assert await _states(clean_db) == replay(valid)

    dead = read_topic(endpoints.kafka_bootstrap, topics.dead_letter_topic, len(poison))
    assert sorted(dict(r.headers)["iopcare-dlq-reason"].decode() for r in dead) == sorted(
        reason for _, _, reason in poison
    )
    assert all(dict(r.headers)["iopcare-dlq-source-topic"].decode() == topics.events_topic for r in dead)

    # The worker's /metrics counts them by reason, with no patient id in any label.

    exposition = await asyncio.to_thread(_get, f"http://127.0.0.1:{worker.port}/metrics")
    assert 'iopcare_dead_letters_total{reason="key_mismatch"} 1.0' in exposition
    assert (
        f'iopcare_events_processed_total{{outcome="applied",type="iop.patient.enrolled"}} {3.0}' in exposition
    )
    assert "p-0000" not in exposition


def _one_patient_per_partition(partitions: int) -> list[str]:
    """Patient ids whose keys land on every partition (kafka's default partitioner: murmur2)."""
    found: dict[int, str] = {}
    for n in range(10_000):
        patient = f"p-other-{n}"
        found.setdefault((murmur2(patient.encode()) & 0x7FFFFFFF) % partitions, patient)
        if len(found) == partitions:
            return list(found.values())
    raise AssertionError("no key for some partition")


async def test_the_worker_sweeps_absence_and_reports_ready(
    endpoints: Endpoints, topics: Settings, clean_db: str, tmp_path: Path
) -> None:
    # The stream clock: the checks fall due as program time passes in the events, not the wall clock.
    worker = WorkerProcess(
        endpoints.kafka_bootstrap,
        clean_db,
        topics,
        tmp_path,
        app_id=f"test-sweep-{uuid.uuid4().hex[:6]}",
        extra_env={"IOPCARE_CLOCK": "stream", "IOPCARE_SWEEP_INTERVAL_SECONDS": "0.5"},
    )
    try:
        enrolled = example_event("iop.patient.enrolled").model_copy(
            update={"subject": "p-quiet", "id": "q-1"}
        )
        # Other patients' check-ins three days later, on every partition, move the stream clock (the
        # least over partitions) past the quiet patient's 48 h and 72 h without a check-in.
        others = [
            example_event("iop.checkin.submitted").model_copy(
                update={"subject": patient, "id": f"q-{patient}", "time": enrolled.time + timedelta(days=3)}
            )
            for patient in _one_patient_per_partition(topics.topic_partitions)
        ]
        _publish(endpoints.kafka_bootstrap, topics.events_topic, [enrolled, *others])
        # One silence alert: raised at 48 h (medium); at 72 h the same episode rises to high. It is an
        # inbox item (the pack's tier), so it never escalates.
        silence = (
            "SELECT count(*) FROM alert_transitions t JOIN alerts a USING (alert_id) "
            "WHERE a.patient_id = 'p-quiet' AND a.rule_id = 'silence'"
        )
        assert await wait_for_count(clean_db, silence, 2, within=60) == 2
        # Swept again and again, still once each; and each change reached the alerts topic.
        await asyncio.sleep(2)
        assert await wait_for_count(clean_db, silence, 0) == 2
        connection = await asyncpg.connect(clean_db)
        try:
            alert = await connection.fetchrow("SELECT * FROM alerts WHERE patient_id = 'p-quiet'")
            kinds = await connection.fetch(
                "SELECT kind FROM alert_transitions WHERE alert_id = $1 ORDER BY id", alert["alert_id"]
            )
        finally:
            await connection.close()
        assert [k["kind"] for k in kinds] == ["created", "updated"]
        assert (alert["severity"], alert["occurrences"], alert["escalated"]) == ("high", 2, False)
        assert alert["tier"] == "inbox"
        assert alert["counselor_id"] == "staff-c12"
        published = "SELECT count(*) FROM outbox WHERE patient_id = 'p-quiet' AND published_at IS NOT NULL"
        assert await wait_for_count(clean_db, published, 2, within=20) == 2

        ready = json.loads(await asyncio.to_thread(_get, f"http://127.0.0.1:{worker.port}/readyz"))
        assert ready == {"status": "ready", "checks": {"postgres": True, "broker": True, "partitions": True}}
        exposition = await asyncio.to_thread(_get, f"http://127.0.0.1:{worker.port}/metrics")
        assert 'iopcare_alert_changes_total{kind="created",severity="medium"}' in exposition
        assert "iopcare_alert_events_published_total" in exposition
        assert 'iopcare_absence_sweep_runs_total{outcome="ok"}' in exposition
    finally:
        assert worker.stop() in (0, -15), worker.log()[-3000:]

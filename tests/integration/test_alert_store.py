"""Alerts in real Postgres: snapshots, transitions, alert events in the outbox, escalation sweeps."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta

import asyncpg
import pytest
from kafka import KafkaConsumer, KafkaProducer

from iopcare.contract.alerts import AlertEvent
from iopcare.dispatcher.relay import NOTIFICATION_GROUP_HEADER, OutboundRecord, OutboxRelay
from iopcare.domain.alerts import DEFAULT_DEADLINES, AlertError, PatientAlerts
from iopcare.domain.counselor import Acknowledge, CounselorAction, Resolve, Snooze
from iopcare.endpoints import Endpoints
from iopcare.settings import Settings
from iopcare.store.alerts import CareTeam, load_alerts, record_changes
from iopcare.store.counselor_actions import ActionOutcome, AlertNotFound, apply_action
from iopcare.store.engagement import EngagementStore
from iopcare.topics import ensure_topics
from tests.unit.domain.test_alert_lifecycle import NOW, PATIENT, signal

pytestmark = pytest.mark.integration

TEAM = {PATIENT: CareTeam("staff-c12", "staff-s03")}


@pytest.fixture
async def pool(clean_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(clean_db, min_size=1, max_size=4)
    assert pool is not None
    await pool.execute("TRUNCATE alerts, alert_transitions CASCADE")
    await pool.execute(
        "INSERT INTO patient_state (patient_id, state, counselor_id, supervisor_id) "
        "VALUES ($1, '{}', 'staff-c12', 'staff-s03')",
        PATIENT,
    )
    yield pool
    await pool.close()


async def _raise(pool: asyncpg.Pool, *signals: object, now=NOW) -> list:
    async with pool.acquire() as connection, connection.transaction():
        alerts = (await load_alerts(connection, [PATIENT]))[PATIENT]
        changes = alerts.take(signals, pack_version="2026.1", now=now, deadline=DEFAULT_DEADLINES)  # type: ignore[arg-type]
        await record_changes(connection, changes, TEAM, {PATIENT: 55})
    return changes


async def test_repeat_triggers_update_one_row_and_every_change_is_a_transition_and_an_event(
    pool: asyncpg.Pool,
) -> None:
    for day in range(3):
        await _raise(pool, signal("missed_in_a_row", at=NOW + timedelta(days=day)))
    row = await pool.fetchrow("SELECT * FROM alerts")
    assert (row["occurrences"], row["state"], row["counselor_id"], row["risk_score"]) == (
        3,
        "open",
        "staff-c12",
        55,
    )
    assert len(row["event_ids"]) == 3
    kinds = [r["kind"] for r in await pool.fetch("SELECT kind FROM alert_transitions ORDER BY id")]
    assert kinds == ["created", "updated", "updated"]
    events = [
        AlertEvent.model_validate_json(r["payload"])
        for r in await pool.fetch("SELECT payload::text AS payload FROM outbox ORDER BY id")
    ]
    assert [e.type for e in events] == ["iop.alert.created", "iop.alert.updated", "iop.alert.updated"]
    assert [e.data.occurrences for e in events] == [1, 2, 3]
    assert {e.data.alert_id for e in events} == {str(row["alert_id"])}


async def test_loading_restores_the_lifecycle_exactly(pool: asyncpg.Pool) -> None:
    await _raise(pool, signal("craving_high"), signal("safety", "critical"))
    async with pool.acquire() as connection:
        loaded = (await load_alerts(connection, [PATIENT]))[PATIENT]
    expected = PatientAlerts(PATIENT)
    expected.take(
        [signal("craving_high"), signal("safety", "critical")],
        pack_version="2026.1",
        now=NOW,
        deadline=DEFAULT_DEADLINES,
    )
    assert loaded.alerts == expected.alerts


async def test_an_unacknowledged_critical_alert_escalates_once_across_sweeps_and_workers(
    pool: asyncpg.Pool,
) -> None:
    await _raise(pool, signal("safety", "critical"))
    store_a = EngagementStore(pool, deadline=DEFAULT_DEADLINES)
    store_b = EngagementStore(pool, deadline=DEFAULT_DEADLINES)
    assert (await store_a.sweep(NOW + timedelta(minutes=14))).alert_changes == []
    later = NOW + timedelta(minutes=16)
    results = await asyncio.gather(*(s.sweep(later) for s in (store_a, store_b, store_a)))
    escalations = [c for outcome in results for c in outcome.alert_changes]
    assert [c.kind for c in escalations] == ["escalated"]
    row = await pool.fetchrow("SELECT escalated, escalate_at, supervisor_id FROM alerts")
    assert (row["escalated"], row["escalate_at"], row["supervisor_id"]) == (True, None, "staff-s03")
    payload = await pool.fetchval("SELECT payload::text FROM outbox WHERE kind = 'iop.alert.escalated'")
    assert json.loads(payload)["data"]["escalated"] is True


async def test_the_relay_publishes_each_alert_event_once_in_order_keyed_by_patient(
    pool: asyncpg.Pool, endpoints: Endpoints, unique_topics: Settings
) -> None:
    topics = unique_topics
    ensure_topics(endpoints.kafka_bootstrap, topics)
    for day in range(3):
        await _raise(pool, signal("missed_in_a_row", at=NOW + timedelta(days=day)))
    producer = KafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap, acks="all")

    async def send(records: Sequence[OutboundRecord]) -> None:
        futures = [
            producer.send(topics.alerts_topic, key=r.key, value=r.value, headers=r.headers()) for r in records
        ]
        await asyncio.to_thread(lambda: [f.get(timeout=30) for f in futures])

    try:
        relays = [OutboxRelay(pool, send), OutboxRelay(pool, send)]
        sent = await asyncio.gather(*(r.drain() for r in relays))
        assert sum(sent) == 3
        assert await relays[0].drain() == 0  # published rows are not sent again
    finally:
        producer.close()
    consumer = KafkaConsumer(
        topics.alerts_topic,
        bootstrap_servers=endpoints.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    try:
        records = list(consumer)
    finally:
        consumer.close()
    assert {r.key for r in records} == {PATIENT.encode()}
    groups = [dict(r.headers)[NOTIFICATION_GROUP_HEADER] for r in records]
    assert len(set(groups)) == 3  # three separate decisions: three notifications
    events = [AlertEvent.model_validate_json(r.value) for r in records]
    assert [(e.type, e.data.occurrences) for e in events] == [
        ("iop.alert.created", 1),
        ("iop.alert.updated", 2),
        ("iop.alert.updated", 3),
    ]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0


async def test_alert_changes_decided_together_for_a_patient_share_one_notification_group(
    pool: asyncpg.Pool,
) -> None:
    await _raise(pool, signal("craving_high"), signal("safety", "critical"))  # 2 created + 1 inhibited
    await _raise(pool, signal("reported_use", "high", at=NOW + timedelta(hours=1)))
    rows = await pool.fetch("SELECT kind, notification_group FROM outbox ORDER BY id")
    assert [r["kind"] for r in rows] == [
        "iop.alert.created",
        "iop.alert.created",
        "iop.alert.updated",
        "iop.alert.created",
    ]
    assert len({r["notification_group"] for r in rows[:3]}) == 1
    assert rows[3]["notification_group"] != rows[0]["notification_group"]


async def _act(pool: asyncpg.Pool, alert_id: str, action: CounselorAction, now: datetime) -> ActionOutcome:
    async with pool.acquire() as connection, connection.transaction():
        return await apply_action(connection, alert_id, action, now=now, deadline=DEFAULT_DEADLINES)


async def test_a_counselors_acknowledgement_is_recorded_with_who_and_stops_the_escalation(
    pool: asyncpg.Pool,
) -> None:
    (created,) = await _raise(pool, signal("craving_high", "high"))
    alert_id = created.alert.alert_id
    outcome = await _act(pool, alert_id, Acknowledge("staff-c12", "called her"), NOW + timedelta(hours=1))
    assert [c.kind for c in outcome.changes] == ["acknowledged"]
    row = await pool.fetchrow("SELECT state, escalate_at, risk_score FROM alerts")
    assert (row["state"], row["escalate_at"], row["risk_score"]) == ("acknowledged", None, 55)
    transition = await pool.fetchrow("SELECT * FROM alert_transitions ORDER BY id DESC LIMIT 1")
    assert (transition["kind"], transition["actor"], transition["from_state"], transition["reason"]) == (
        "acknowledged",
        "staff-c12",
        "open",
        "called her",
    )
    kinds = [r["kind"] for r in await pool.fetch("SELECT kind FROM outbox ORDER BY id")]
    assert kinds == ["iop.alert.created", "iop.alert.acknowledged"]
    later = NOW + timedelta(days=2)
    assert (await EngagementStore(pool, deadline=DEFAULT_DEADLINES).sweep(later)).alert_changes == []


async def test_an_acknowledgement_after_the_deadline_comes_after_the_escalation_it_missed(
    pool: asyncpg.Pool,
) -> None:
    (created,) = await _raise(pool, signal("safety", "critical"))
    outcome = await _act(pool, created.alert.alert_id, Acknowledge("staff-c12"), NOW + timedelta(minutes=20))
    assert [(c.kind, c.at) for c in outcome.changes] == [
        ("escalated", NOW + timedelta(minutes=15)),
        ("acknowledged", NOW + timedelta(minutes=20)),
    ]
    assert outcome.alert.escalated and outcome.alert.state == "acknowledged"


async def test_snooze_and_resolve_are_recorded_and_a_resolved_alert_takes_no_more_actions(
    pool: asyncpg.Pool,
) -> None:
    (created,) = await _raise(pool, signal("missed_in_a_row"))
    alert_id = created.alert.alert_id
    until = NOW + timedelta(days=1)
    snoozed = await _act(pool, alert_id, Snooze("staff-c12", until, "patient in hospital"), NOW)
    assert (snoozed.alert.state, snoozed.alert.snoozed_until) == ("snoozed", until)
    with pytest.raises(AlertError):
        await _act(pool, alert_id, Snooze("staff-c12", NOW - timedelta(hours=1), "x"), NOW)
    resolved = await _act(pool, alert_id, Resolve("staff-s03", "back on plan"), NOW + timedelta(hours=2))
    assert (resolved.alert.state, resolved.alert.resolution) == ("resolved", "back on plan")
    with pytest.raises(AlertError):
        await _act(pool, alert_id, Acknowledge("staff-c12"), NOW + timedelta(hours=3))
    with pytest.raises(AlertNotFound):
        await _act(pool, str(uuid.uuid4()), Acknowledge("staff-c12"), NOW)
    rows = await pool.fetch("SELECT kind, actor FROM alert_transitions ORDER BY id")
    assert [(r["kind"], r["actor"]) for r in rows] == [
        ("created", "system"),
        ("snoozed", "staff-c12"),
        ("resolved", "staff-s03"),
    ]


async def test_resolving_a_critical_alert_lifts_the_inhibition_it_held(pool: asyncpg.Pool) -> None:
    await _raise(pool, signal("craving_high"), signal("safety", "critical"))
    critical = await pool.fetchval("SELECT alert_id::text FROM alerts WHERE severity = 'critical'")
    outcome = await _act(
        pool, critical, Resolve("staff-c12", "safety plan in place"), NOW + timedelta(minutes=5)
    )
    assert [c.kind for c in outcome.changes] == ["resolved", "updated"]
    row = await pool.fetchrow("SELECT inhibited_by, escalate_at FROM alerts WHERE rule_id = 'craving_high'")
    assert row["inhibited_by"] is None
    assert row["escalate_at"] == DEFAULT_DEADLINES("medium", NOW + timedelta(minutes=5))

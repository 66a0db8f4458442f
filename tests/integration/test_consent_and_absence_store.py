"""Consent quarantine and absence sweeps against real Postgres (the store, without the broker)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from iopcare.contract import CareTeamChanged, CheckInSubmitted, InboundEvent, new_event
from iopcare.store.engagement import EngagementStore
from iopcare.store.events import AcceptedEvent
from tests.unit.domain.test_absence import PATIENT as ABSENT
from tests.unit.domain.test_absence import T0 as ENROLLED_AT
from tests.unit.domain.test_absence import checkin, enrolled
from tests.unit.domain.test_consent_gate import PATIENT, T0, grant, house  # T0: months ago

pytestmark = pytest.mark.integration


async def _commit(store: EngagementStore, *events: InboundEvent) -> None:
    await store.commit_batch([AcceptedEvent(e, 0, n) for n, e in enumerate(events)], [])


async def test_a_report_without_consent_is_held_then_released_by_a_grant(pool: asyncpg.Pool) -> None:
    store = EngagementStore(pool)
    yesterday = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)  # still inside its hold
    report, consent = house(yesterday, "positive_test"), grant(yesterday + timedelta(hours=20))
    outcome = await store.commit_batch([AcceptedEvent(report, 0, 1)], [])
    assert [h.reason for h in outcome.quarantined] == ["no_consent"]
    row = await pool.fetchrow("SELECT * FROM quarantine_status WHERE event_id = $1", report.id)
    assert (row["status"], row["reason"], row["party_id"]) == ("held", "no_consent", "house-maple")
    assert (await store.load_states([PATIENT]))[PATIENT].use_signals == []

    outcome = await store.commit_batch([AcceptedEvent(consent, 0, 2)], [])
    assert [h.event.id for h in outcome.released] == [report.id]
    row = await pool.fetchrow("SELECT * FROM quarantine_status WHERE event_id = $1", report.id)
    assert (row["status"], row["released_by"]) == ("released", consent.id)
    assert [u.kind for u in (await store.load_states([PATIENT]))[PATIENT].use_signals] == ["house_positive"]


async def test_a_report_held_and_released_in_one_batch_is_recorded_as_both(pool: asyncpg.Pool) -> None:
    store = EngagementStore(pool)
    report, consent = house(T0), grant(T0 + timedelta(days=1))
    await _commit(store, report, consent)
    row = await pool.fetchrow(
        "SELECT status, released_by FROM quarantine_status WHERE event_id = $1", report.id
    )
    assert (row["status"], row["released_by"]) == ("released", consent.id)
    assert len((await store.load_states([PATIENT]))[PATIENT].house_incidents) == 1


async def test_a_report_whose_window_passed_stays_held_and_shows_expired(pool: asyncpg.Pool) -> None:
    store = EngagementStore(pool)
    await _commit(store, house(T0), grant(T0 + timedelta(days=20)))
    assert await pool.fetchval("SELECT status FROM quarantine_status") == "expired"  # T0 is in the past


async def test_silence_alerts_at_48_hours_and_rises_to_high_at_72_once_each(pool: asyncpg.Pool) -> None:
    store = EngagementStore(pool)
    last = checkin(ENROLLED_AT + timedelta(hours=10))
    await _commit(store, enrolled(), last)
    assert (await store.sweep(last.time + timedelta(hours=47))).fired == []
    first = await store.sweep(last.time + timedelta(hours=49))
    assert first.fired == [("checkin_silence", True)]
    assert (await store.sweep(last.time + timedelta(hours=50))).fired == []
    second = await store.sweep(last.time + timedelta(hours=73))
    assert second.fired == [("checkin_silence", True)]
    [alert] = await pool.fetch("SELECT * FROM alerts")
    assert (alert["rule_id"], alert["severity"], alert["occurrences"]) == ("silence", "high", 2)
    # Raised when it fell due (48 h after the check-in), not when the sweep ran.
    assert alert["raised_at"] == last.time + timedelta(hours=48)
    # An inbox item (the pack's tier): it rose to high at 72 h, and never escalated.
    rows = await pool.fetch("SELECT kind, payload::text AS payload FROM outbox ORDER BY id")
    assert [r["kind"] for r in rows] == ["iop.alert.created", "iop.alert.updated"]
    assert [json.loads(r["payload"])["data"]["severity"] for r in rows] == ["medium", "high"]
    assert {json.loads(r["payload"])["data"]["tier"] for r in rows} == {"inbox"} and not alert["escalated"]


async def test_a_checkin_before_the_deadline_cancels_the_pending_silence_checks(pool: asyncpg.Pool) -> None:
    store = EngagementStore(pool)
    await _commit(store, enrolled())
    await _commit(store, checkin(ENROLLED_AT + timedelta(hours=40)))
    outcome = await store.sweep(ENROLLED_AT + timedelta(hours=73))
    assert outcome.fired == []
    assert await pool.fetchval("SELECT count(*) FROM absence_checks WHERE kind = 'checkin_silence'") == 2


async def test_two_workers_sweeping_at_once_fire_each_check_once(pool: asyncpg.Pool) -> None:
    store_a, store_b = EngagementStore(pool), EngagementStore(pool)
    await _commit(store_a, enrolled())
    # Far enough ahead that every silence and week-close check is due.
    now = ENROLLED_AT + timedelta(days=40)
    outcomes = await asyncio.gather(*(s.sweep(now) for s in (store_a, store_b, store_a, store_b)))
    fired = [item for outcome in outcomes for item in outcome.fired]
    total = await pool.fetchval("SELECT count(*) FROM absence_checks WHERE patient_id = $1", ABSENT)
    # 2 silences, 4 week closes, family therapy due by day 21: each fired by exactly one sweep.
    assert len(fired) == total == 2 + 4 + 1
    assert await pool.fetchval("SELECT count(*) FROM absence_checks WHERE fired_at IS NULL") == 0
    changes = [c for outcome in outcomes for c in outcome.alert_changes]
    created = [c.alert.dedup_key for c in changes if c.kind == "created"]
    assert created and len(created) == len(set(created)) == await pool.fetchval("SELECT count(*) FROM alerts")
    assert await pool.fetchval("SELECT count(*) FROM outbox") == len(changes)


async def test_the_sweep_skips_a_patient_whose_batch_is_in_flight(pool: asyncpg.Pool) -> None:
    store = EngagementStore(pool)
    await _commit(store, enrolled())
    now = ENROLLED_AT + timedelta(hours=49)
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("SELECT 1 FROM patient_state WHERE patient_id = $1 FOR UPDATE", ABSENT)
        busy = await store.sweep(now)
        assert (busy.fired, busy.skipped_busy) == ([], 1)
    assert (await store.sweep(now)).fired == [("checkin_silence", True)]


async def test_a_patient_whose_course_raises_in_the_sweep_is_set_aside_and_the_others_are_swept(
    pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect met while advancing one patient (injected into the domain's check evaluation) leaves
    that patient as stored; the sweep still fires the other patients' checks, and retries later."""
    from iopcare.domain import course

    store = EngagementStore(pool, set_aside_seconds=0.5)
    last = checkin(ENROLLED_AT + timedelta(hours=10))
    other = [e.model_copy(update={"subject": "pt-absence02", "id": f"{e.id}-2"}) for e in (enrolled(), last)]
    await _commit(store, enrolled(), last, *other)
    real = course.findings_at

    def defective(state, check, pack):  # type: ignore[no-untyped-def]
        if state.patient_id == ABSENT:
            raise ZeroDivisionError("a defect")
        return real(state, check, pack)

    monkeypatch.setattr(course, "findings_at", defective)
    swept = await store.sweep(last.time + timedelta(hours=49))
    assert [type(e) for e in swept.failed] == [ZeroDivisionError]
    assert swept.fired == [("checkin_silence", True)] and swept.patients == 1
    assert [r["patient_id"] for r in await pool.fetch("SELECT patient_id FROM alerts")] == ["pt-absence02"]
    assert (await store.sweep(last.time + timedelta(hours=49))).failed == []  # set aside: not tried

    monkeypatch.setattr(course, "findings_at", real)  # the defect fixed
    await asyncio.sleep(0.6)
    again = await store.sweep(last.time + timedelta(hours=49))
    assert (again.failed, again.fired) == ([], [("checkin_silence", True)])
    assert sorted(r["patient_id"] for r in await pool.fetch("SELECT patient_id FROM alerts")) == [
        ABSENT,
        "pt-absence02",
    ]


async def test_a_transfer_moves_the_patient_and_their_open_alerts_to_the_new_counselor(
    pool: asyncpg.Pool,
) -> None:
    store = EngagementStore(pool)
    last = checkin(ENROLLED_AT + timedelta(hours=10))
    await _commit(store, enrolled(), last)
    await store.sweep(last.time + timedelta(hours=49))  # a silence alert, to the first counselor
    before = await pool.fetchrow("SELECT counselor_id FROM alerts WHERE rule_id = 'silence'")
    transfer = new_event(
        CareTeamChanged,
        subject=ABSENT,
        source="ehr.clinic-a",
        time=last.time + timedelta(hours=50),
        id="ab-transfer",
        data={"counselor_id": "staff-c77", "supervisor_id": "staff-s77", "reason_code": "transfer"},
    )
    await _commit(store, transfer)
    patient = await pool.fetchrow(
        "SELECT counselor_id, supervisor_id FROM patient_state WHERE patient_id = $1", ABSENT
    )
    after = await pool.fetchrow("SELECT counselor_id, supervisor_id FROM alerts WHERE rule_id = 'silence'")
    assert before["counselor_id"] != "staff-c77"
    assert tuple(patient) == tuple(after) == ("staff-c77", "staff-s77")
    last_event = await pool.fetchrow(
        "SELECT kind, payload::text AS payload FROM outbox ORDER BY id DESC LIMIT 1"
    )
    assert last_event["kind"] == "iop.alert.updated"
    assert json.loads(last_event["payload"])["data"]["counselor_id"] == "staff-c77"
    reason = await pool.fetchval("SELECT reason FROM alert_transitions ORDER BY id DESC LIMIT 1")
    assert reason == "care team changed: counselor staff-c77, supervisor staff-s77"


async def test_a_patient_with_no_counselor_yet_is_in_the_intake_supervisors_queue(pool: asyncpg.Pool) -> None:
    store = EngagementStore(pool, intake_supervisor_id="staff-s-intake")
    early = new_event(
        CheckInSubmitted,
        subject=ABSENT,
        source="checkin-app",
        time=ENROLLED_AT - timedelta(hours=2),
        id="ab-early-safety",
        data={
            "craving": 2,
            "mood": 3,
            "sleep_hours": 5,
            "substance_use_reported": False,
            "safety_concern": True,
        },
    )
    await _commit(store, early)
    patient = await pool.fetchrow(
        "SELECT counselor_id, supervisor_id FROM patient_state WHERE patient_id = $1", ABSENT
    )
    alert = await pool.fetchrow("SELECT rule_id, supervisor_id, escalated FROM alerts")
    assert tuple(patient) == (None, "staff-s-intake")
    assert tuple(alert) == ("safety", "staff-s-intake", True)
    kinds = await pool.fetch("SELECT kind FROM outbox ORDER BY id")
    assert [k["kind"] for k in kinds] == ["iop.alert.created", "iop.alert.escalated"]
    await _commit(store, enrolled())
    assert await pool.fetchval("SELECT supervisor_id FROM alerts") == "staff-s03"  # the enrollment's team

"""A sweep takes a patient's due work in time order: the absence check that fell due before an
alert's deadline fires first, then the alert escalates, in one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from iopcare.domain.alerts import DEFAULT_DEADLINES
from iopcare.store.alerts import CareTeam, load_alerts, record_changes
from iopcare.store.engagement import EngagementStore
from tests.unit.domain.test_alert_lifecycle import NOW, PATIENT, signal

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(clean_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(clean_db, min_size=1, max_size=2)
    assert pool is not None
    await pool.execute(
        "INSERT INTO patient_state (patient_id, state, counselor_id, supervisor_id) "
        "VALUES ($1, '{}', 'staff-c12', 'staff-s03')",
        PATIENT,
    )
    yield pool
    await pool.close()


async def test_a_sweep_fires_the_check_due_before_the_deadline_then_escalates(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as connection, connection.transaction():
        alerts = (await load_alerts(connection, [PATIENT]))[PATIENT]
        changes = alerts.take(
            [signal("safety", "critical")], pack_version="2026.1", now=NOW, deadline=DEFAULT_DEADLINES
        )
        await record_changes(
            connection, changes, {PATIENT: CareTeam("staff-c12", "staff-s03")}, {PATIENT: 55}
        )
    # A week closing 5 minutes in, not swept yet (a batch held the patient's row at the time).
    await pool.execute(
        "INSERT INTO absence_checks (patient_id, check_key, kind, due_at) VALUES ($1, 'week_close:x:1', "
        "'week_close', $2)",
        PATIENT,
        NOW + timedelta(minutes=5),
    )
    store = EngagementStore(pool, deadline=DEFAULT_DEADLINES)
    later = NOW + timedelta(minutes=16)  # past the critical alert's 15-minute deadline
    outcome = await store.sweep(later)
    assert outcome.fired == [("week_close", False)]
    assert [c.kind for c in outcome.alert_changes] == ["escalated"]
    assert await pool.fetchval("SELECT escalated FROM alerts") is True
    assert await pool.fetchval("SELECT fired_at IS NOT NULL FROM absence_checks") is True
    assert (await store.sweep(later)).alert_changes == []

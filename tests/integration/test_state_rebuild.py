"""`iopcare state rebuild`: stored states recomputed from the event log, differences found and repaired."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date

import asyncpg
import pytest

from iopcare.domain.intake import replay
from iopcare.domain.state_document import STATE_VERSION, dump_state
from iopcare.simulation import generate_cohort
from iopcare.store.engagement import EngagementStore
from iopcare.store.events import AcceptedEvent
from iopcare.store.rebuild import rebuild_states

pytestmark = pytest.mark.integration

EVENTS = sorted(generate_cohort(6, seed=11, start=date(2026, 3, 2)), key=lambda e: (e.time, e.id))


def _rebuild(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, IOPCARE_DATABASE_URL=database_url, IOPCARE_KAFKA_BOOTSTRAP="127.0.0.1:9")
    return subprocess.run(
        [sys.executable, "-m", "iopcare.cli", "state", "rebuild", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def test_rebuild_finds_a_corrupted_state_and_apply_repairs_it(
    pool: asyncpg.Pool, clean_db: str
) -> None:
    store = EngagementStore(pool, clock="stream")
    for start in range(0, len(EVENTS), 200):
        chunk = EVENTS[start : start + 200]
        await store.commit_batch([AcceptedEvent(e, 0, start + i) for i, e in enumerate(chunk)], [])
    expected = replay(EVENTS)
    assert await store.load_states() == expected

    clean = await rebuild_states(pool)
    assert (clean.patients, clean.events, clean.differences) == (len(expected), len(EVENTS), [])

    # Corrupt one patient's state: a check-in lost, and the count with it.
    victim = sorted(expected)[2]
    corrupted = replay(EVENTS)[victim]
    del corrupted.checkins[3]
    corrupted.events_applied -= 1
    async with pool.acquire() as connection:
        await connection.execute(
            "UPDATE patient_state SET state = $2::jsonb, state_version = $3, events_applied = $4 "
            "WHERE patient_id = $1",
            victim,
            dump_state(corrupted),
            STATE_VERSION,
            corrupted.events_applied,
        )

    found = _rebuild(clean_db)
    assert found.returncode == 1, found.stdout + found.stderr
    assert f"{victim}: differs: checkins, events_applied" in found.stdout
    assert f"{len(expected)} patients, {len(EVENTS)} events: 1 differences" in found.stdout
    assert (await store.load_states([victim]))[victim] == corrupted  # only reported

    repaired = _rebuild(clean_db, "--patient", victim, "--apply")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert f"{victim}: repaired: checkins, events_applied" in repaired.stdout
    assert await store.load_states() == expected
    async with pool.acquire() as connection:
        assert (
            await connection.fetchval(
                "SELECT events_applied FROM patient_state WHERE patient_id = $1", victim
            )
            == expected[victim].events_applied
        )

    again = _rebuild(clean_db)
    assert (
        again.returncode == 0
        and f"{len(expected)} patients, {len(EVENTS)} events: 0 differences" in again.stdout
    )


async def test_rebuild_finds_a_stale_read_model_and_apply_repairs_it(pool: asyncpg.Pool) -> None:
    """The API's read model (patient_summary) is checked against the rebuilt state too."""
    store = EngagementStore(pool, clock="stream")
    await store.commit_batch([AcceptedEvent(e, 0, i) for i, e in enumerate(EVENTS)], [])
    victim = sorted(replay(EVENTS))[1]
    async with pool.acquire() as connection:
        before = await connection.fetchrow("SELECT * FROM patient_summary WHERE patient_id = $1", victim)
        assert before["risk"] is not None and before["last_craving"] is not None
        await connection.execute(
            "UPDATE patient_summary SET last_craving = last_craving + 1, risk = NULL WHERE patient_id = $1",
            victim,
        )

    found = await rebuild_states(pool)
    assert [(d.patient_id, d.fields, d.repaired) for d in found.differences] == [
        (victim, ("summary.last_craving", "summary.risk"), False)
    ]
    repaired = await rebuild_states(pool, patient_ids=[victim], apply=True)
    assert [d.repaired for d in repaired.differences] == [True]
    async with pool.acquire() as connection:
        after = await connection.fetchrow("SELECT * FROM patient_summary WHERE patient_id = $1", victim)
    assert dict(after) | {"updated_at": None} == dict(before) | {"updated_at": None}
    assert (await rebuild_states(pool)).differences == []

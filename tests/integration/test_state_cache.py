"""The worker's state cache never serves a state another worker has since rewritten, nor one that a
failed transaction changed."""

from __future__ import annotations

from datetime import date, timedelta

import asyncpg
import pytest

from iopcare.domain.intake import replay
from iopcare.simulation import generate_cohort
from iopcare.store.engagement import EngagementStore
from iopcare.store.events import AcceptedEvent

pytestmark = pytest.mark.integration

COHORT = generate_cohort(3, seed=5, start=date.today() - timedelta(days=60), days=30)


async def test_two_workers_taking_turns_on_the_same_patients_stay_exact(pool: asyncpg.Pool) -> None:
    # As in a rebalance: partitions move back and forth, each worker holding a cached copy.
    workers = [EngagementStore(pool), EngagementStore(pool)]
    for n, start in enumerate(range(0, len(COHORT), 40)):
        batch = [AcceptedEvent(e, 0, start + i) for i, e in enumerate(COHORT[start : start + 40])]
        await workers[n % 2].commit_batch(batch, [])
    assert await workers[0].load_states() == replay(COHORT)


async def test_a_failed_transaction_leaves_no_trace_in_the_cache(clean_db: str) -> None:
    # A short lock timeout makes the batch fail late in its transaction, after the fold has already
    # changed the (cached) states in place; the row versions in Postgres did not change.
    pool = await asyncpg.create_pool(
        clean_db, min_size=1, max_size=2, server_settings={"lock_timeout": "300ms"}
    )
    assert pool is not None
    try:
        store = EngagementStore(pool)
        half = len(COHORT) // 2
        first = [AcceptedEvent(e, 0, i) for i, e in enumerate(COHORT[:half])]
        second = [AcceptedEvent(e, 0, half + i) for i, e in enumerate(COHORT[half:])]
        await store.commit_batch(first, [])
        blocker = await asyncpg.connect(clean_db)
        try:
            async with blocker.transaction():
                await blocker.execute("LOCK TABLE stream_progress IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await store.commit_batch(second, [])
        finally:
            await blocker.close()
        await store.commit_batch(second, [])
        assert await store.load_states() == replay(COHORT)
    finally:
        await pool.close()

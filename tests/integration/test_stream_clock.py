"""The stream clock waits for every partition: one not yet consumed holds it back like a lagging one."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from iopcare.store.engagement import EngagementStore

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

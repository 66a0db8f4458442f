"""The dead-letter table's retention on real Postgres, as the processor's own role runs it."""

from __future__ import annotations

import asyncpg
import pytest

from iopcare.store.events import RejectedRecord, delete_old_dead_letters, insert_dead_letters
from tests.databases import service_url

pytestmark = pytest.mark.integration


async def test_dead_letters_past_the_retention_are_deleted_and_the_rest_kept(clean_db: str) -> None:
    processor = await asyncpg.connect(service_url(clean_db, "processor"))
    try:
        records = [
            RejectedRecord("invalid_json", "x", "iop.events.v1", 0, offset, None, b"{" * 10)
            for offset in range(3)
        ]
        assert await insert_dead_letters(processor, records) == 3
        assert await insert_dead_letters(processor, records) == 0  # a redelivery is recorded once
        owner = await asyncpg.connect(clean_db)
        try:
            await owner.execute(
                "UPDATE dead_letters SET failed_at = now() - make_interval(days => 31 - source_offset::int)"
            )
        finally:
            await owner.close()
        # Offsets 0 and 1 failed 31 and 30 days ago and a bit: past 30 days; offset 2 29 days ago.
        assert await delete_old_dead_letters(processor, 30) == 2
        left = await processor.fetch("SELECT source_offset FROM dead_letters")
        assert [r["source_offset"] for r in left] == [2]
    finally:
        await processor.close()

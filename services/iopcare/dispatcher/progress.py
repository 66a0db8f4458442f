"""The dispatcher's position on the alerts topic, kept in Postgres (migration 0019).

The Kafka commit after each batch is for the broker's tools (group lag); what counts is the row
written with the batch's deliveries, in their transaction: the records up to ``next_offset`` of a
partition are in Postgres, whatever the consumer group. When a dispatcher is assigned a partition it
seeks to that offset, so neither a new group nor expired Kafka offsets make it read the topic again
(which would send endpoints registered since then webhooks about old alerts). Where Postgres has no
row, the group's committed offset (or the topic's start) applies.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

Executor = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy | asyncpg.Pool


def next_offsets(positions: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Per partition, the offset after the last of ``(partition, offset)``: where to read on from."""
    after: dict[int, int] = {}
    for partition, offset in positions:
        after[partition] = max(after.get(partition, 0), offset + 1)
    return after


async def record_progress(db: Executor, topic: str, after: Mapping[int, int]) -> None:
    """Move the recorded position of each partition forward to ``after`` (never back)."""
    if not after:
        return
    partitions = sorted(after)
    await db.execute(
        """
        INSERT INTO dispatcher_progress AS p (topic, partition, next_offset)
        SELECT $1, partition, next_offset FROM unnest($2::int[], $3::bigint[]) AS u(partition, next_offset)
        ON CONFLICT (topic, partition) DO UPDATE
            SET next_offset = greatest(p.next_offset, excluded.next_offset), updated_at = now()
        """,
        topic,
        partitions,
        [after[p] for p in partitions],
    )


async def recorded_progress(db: Executor, topic: str) -> dict[int, int]:
    rows = await db.fetch("SELECT partition, next_offset FROM dispatcher_progress WHERE topic = $1", topic)
    return {int(r["partition"]): int(r["next_offset"]) for r in rows}


class ResumeFromPostgres(ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks each newly assigned partition to the position Postgres records for it."""

    def __init__(self, consumer: AIOKafkaConsumer, pool: asyncpg.Pool, topic: str) -> None:
        self._consumer = consumer
        self._pool = pool
        self._topic = topic

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        pass

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        # Without the recorded position the partition would be read from the group's offset, which
        # may be far behind: wait for Postgres (the intake could write nothing without it anyway).
        delay = 0.2
        while True:
            try:
                recorded = await recorded_progress(self._pool, self._topic)
                break
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("alerts position not read (%s); retry in %.1fs", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        for tp in assigned:
            if tp.topic == self._topic and tp.partition in recorded:
                self._consumer.seek(tp, recorded[tp.partition])
                log.info(
                    "alerts partition %d: resuming at offset %d (recorded in Postgres)",
                    tp.partition,
                    recorded[tp.partition],
                )


__all__ = ["ResumeFromPostgres", "next_offsets", "record_progress", "recorded_progress"]

"""The event log, the dead letters and the stream's progress in Postgres: what came in from Kafka.

``event_log`` holds every valid event accepted, once (unique on source + id: the insert's
``RETURNING`` tells a new event from a redelivered one); ``dead_letters`` every record refused, with
its reason; ``stream_progress`` the latest event time committed per partition (the stream clock).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from iopcare.contract import DeadLetterReason, InboundEvent, encode_event

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@dataclass(frozen=True)
class AcceptedEvent:
    """A valid inbound event and where it came from in Kafka."""

    event: InboundEvent
    partition: int
    offset: int


@dataclass(frozen=True)
class RejectedRecord:
    """A Kafka record that is not a valid event, with the reason."""

    reason: DeadLetterReason
    detail: str
    topic: str
    partition: int
    offset: int
    key: bytes | None
    payload: bytes
    headers: tuple[tuple[str, bytes], ...] = ()  # the record's own (binary-mode attributes among them)


async def insert_events(connection: Connection, items: Sequence[AcceptedEvent]) -> set[tuple[str, str]]:
    if not items:
        return set()
    rows = await connection.fetch(
        """
        INSERT INTO event_log
            (source, event_id, patient_id, event_type, event_time, kafka_partition, kafka_offset, payload)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                             $6::int[], $7::bigint[], $8::jsonb[])
        ON CONFLICT (source, event_id) DO NOTHING
        RETURNING source, event_id
        """,
        [i.event.source for i in items],
        [i.event.id for i in items],
        [i.event.subject for i in items],
        [i.event.type for i in items],
        [i.event.time for i in items],
        [i.partition for i in items],
        [i.offset for i in items],
        [encode_event(i.event).decode() for i in items],
    )
    return {(row["source"], row["event_id"]) for row in rows}


DEAD_LETTER_PREFIX_BYTES = 16 * 1024
"""How much of a refused record the table keeps (the dead-letter topic has it whole): enough to see
what was wrong with any ordinary event, not the 10 MB a hostile sender may choose."""

_KEY_PREFIX_BYTES = 1024


async def insert_dead_letters(connection: Connection, rejected: Sequence[RejectedRecord]) -> int:
    """Record refused records once each: reason, detail, where it was, the first
    :data:`DEAD_LETTER_PREFIX_BYTES` of it, its size and the SHA-256 of the whole."""
    result = await connection.execute(
        """
        INSERT INTO dead_letters
            (reason, detail, source_topic, source_partition, source_offset, record_key, payload,
             payload_bytes, payload_sha256)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[],
                             $6::bytea[], $7::bytea[], $8::int[], $9::bytea[])
        ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
        """,
        [r.reason for r in rejected],
        [r.detail for r in rejected],
        [r.topic for r in rejected],
        [r.partition for r in rejected],
        [r.offset for r in rejected],
        [None if r.key is None else r.key[:_KEY_PREFIX_BYTES] for r in rejected],
        [r.payload[:DEAD_LETTER_PREFIX_BYTES] for r in rejected],
        [len(r.payload) for r in rejected],
        [hashlib.sha256(r.payload).digest() for r in rejected],
    )
    return int(result.rsplit(" ", 1)[1])


async def delete_old_dead_letters(connection: Connection, older_than_days: int) -> int:
    """Delete the dead letters recorded more than ``older_than_days`` ago; returns how many."""
    result = await connection.execute(
        "DELETE FROM dead_letters WHERE failed_at < now() - make_interval(days => $1)", older_than_days
    )
    return int(result.rsplit(" ", 1)[1])


async def advance_progress(connection: Connection, accepted: Sequence[AcceptedEvent]) -> None:
    high: dict[int, datetime] = {}
    for item in accepted:
        if item.partition not in high or item.event.time > high[item.partition]:
            high[item.partition] = item.event.time
    await connection.execute(
        """
        INSERT INTO stream_progress (kafka_partition, event_time_high)
        SELECT * FROM unnest($1::int[], $2::timestamptz[])
        ON CONFLICT (kafka_partition) DO UPDATE SET
            event_time_high = greatest(stream_progress.event_time_high, EXCLUDED.event_time_high),
            updated_at = now()
        """,
        list(high),
        list(high.values()),
    )


async def stream_clock(connection: Connection, partitions: int) -> datetime | None:
    """The least, over partitions, of the latest event time committed; None until ``partitions``
    partitions have committed an event."""
    value: datetime | None = await connection.fetchval(
        "SELECT CASE WHEN count(*) >= $1 THEN min(event_time_high) END FROM stream_progress", partitions
    )
    return value


__all__ = [
    "DEAD_LETTER_PREFIX_BYTES",
    "AcceptedEvent",
    "RejectedRecord",
    "advance_progress",
    "delete_old_dead_letters",
    "insert_dead_letters",
    "insert_events",
    "stream_clock",
]

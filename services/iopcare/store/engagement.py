"""Postgres persistence of the event log, patient state and dead letters: one transaction per batch.

The exactly-once *effect* lives here. For a batch of records from one Kafka poll:

1. insert the valid events into ``event_log`` (``ON CONFLICT DO NOTHING RETURNING``): the rows that
   come back are the events never seen before; a redelivered or duplicated event comes back as
   nothing and is applied as nothing;
2. lock the state rows of the patients concerned (in patient-id order, so two workers overlapping
   during a rebalance cannot deadlock), fold the new events into them with the pure domain;
3. write the states back set-based (one statement for the batch) and the dead letters too.

The caller commits Kafka offsets only after this transaction commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import asyncpg
from pydantic import TypeAdapter

from iopcare.contract import DeadLetterReason, InboundEvent, encode_event
from iopcare.domain.engagement import DEFAULT_TUNING, PatientState, Tuning, apply_event

_STATE = TypeAdapter(PatientState)

# A pooled connection or a plain one: repository methods accept either.
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


@dataclass
class BatchOutcome:
    """What one batch transaction did."""

    applied: list[InboundEvent] = field(default_factory=list)
    duplicates: int = 0
    late: int = 0
    dead_lettered: int = 0
    patients: int = 0


def dump_state(state: PatientState) -> str:
    """State as JSON text (what the ``state`` column holds)."""
    return _STATE.dump_json(state).decode()


def load_state(document: str | bytes) -> PatientState:
    """State from the ``state`` column."""
    return _STATE.validate_json(document)


class EngagementStore:
    """Event log, patient state and dead letters in Postgres."""

    def __init__(self, pool: asyncpg.Pool, tuning: Tuning = DEFAULT_TUNING) -> None:
        self._pool = pool
        self._tuning = tuning

    async def commit_batch(
        self, accepted: Sequence[AcceptedEvent], rejected: Sequence[RejectedRecord]
    ) -> BatchOutcome:
        """Apply a batch in one transaction; see the module docstring."""
        outcome = BatchOutcome()
        # One row per idempotency key, in key order so concurrent batches lock in the same order.
        unique: dict[tuple[str, str], AcceptedEvent] = {}
        for item in accepted:
            unique.setdefault((item.event.source, item.event.id), item)
        outcome.duplicates = len(accepted) - len(unique)
        ordered = [unique[key] for key in sorted(unique)]

        async with self._pool.acquire() as connection, connection.transaction():
            inserted = await self._insert_events(connection, ordered)
            outcome.duplicates += len(ordered) - len(inserted)
            # `unique` holds each key's first occurrence, in arrival order.
            fresh = [item for key, item in unique.items() if key in inserted]
            if fresh:
                states = await self._lock_states(connection, sorted({i.event.subject for i in fresh}))
                for item in fresh:  # arrival (offset) order; the fold does not depend on it
                    state = states[item.event.subject]
                    if apply_event(state, item.event, self._tuning):
                        outcome.late += 1
                    outcome.applied.append(item.event)
                await self._write_states(connection, list(states.values()))
                outcome.patients = len(states)
            if rejected:
                outcome.dead_lettered = await self._insert_dead_letters(connection, rejected)
        return outcome

    async def _insert_events(
        self, connection: Connection, items: Sequence[AcceptedEvent]
    ) -> set[tuple[str, str]]:
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

    async def _lock_states(self, connection: Connection, patient_ids: list[str]) -> dict[str, PatientState]:
        # Create missing rows first so that every state is read under a row lock: two transactions
        # that both "create" a patient would otherwise each start from empty and one would lose.
        await connection.execute(
            """
            INSERT INTO patient_state (patient_id, state)
            SELECT id, '{}'::jsonb FROM unnest($1::text[]) AS id
            ON CONFLICT (patient_id) DO NOTHING
            """,
            patient_ids,
        )
        rows = await connection.fetch(
            "SELECT patient_id, state::text AS state FROM patient_state "
            "WHERE patient_id = ANY($1::text[]) ORDER BY patient_id FOR UPDATE",
            patient_ids,
        )
        states: dict[str, PatientState] = {}
        for row in rows:
            document = row["state"]
            states[row["patient_id"]] = (
                PatientState(patient_id=row["patient_id"]) if document == "{}" else load_state(document)
            )
        return states

    async def _write_states(self, connection: Connection, states: list[PatientState]) -> None:
        await connection.execute(
            """
            UPDATE patient_state AS p SET
                state = u.state, counselor_id = u.counselor_id, supervisor_id = u.supervisor_id,
                level_of_care = u.level_of_care, high_water = u.high_water,
                last_checkin_at = u.last_checkin_at, events_applied = u.events_applied,
                late_events = u.late_events, updated_at = now()
            FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                        $7::timestamptz[], $8::bigint[], $9::bigint[])
                AS u(patient_id, state, counselor_id, supervisor_id, level_of_care, high_water,
                     last_checkin_at, events_applied, late_events)
            WHERE p.patient_id = u.patient_id
            """,
            [s.patient_id for s in states],
            [dump_state(s) for s in states],
            [s.enrollment.counselor_id if s.enrollment else None for s in states],
            [s.enrollment.supervisor_id if s.enrollment else None for s in states],
            [s.level_of_care for s in states],
            [s.high_water for s in states],
            [s.last_checkin_at for s in states],
            [s.events_applied for s in states],
            [s.late_events for s in states],
        )

    async def _insert_dead_letters(self, connection: Connection, rejected: Sequence[RejectedRecord]) -> int:
        result = await connection.execute(
            """
            INSERT INTO dead_letters
                (reason, detail, source_topic, source_partition, source_offset, record_key, payload)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::bigint[],
                                 $6::bytea[], $7::bytea[])
            ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING
            """,
            [r.reason for r in rejected],
            [r.detail for r in rejected],
            [r.topic for r in rejected],
            [r.partition for r in rejected],
            [r.offset for r in rejected],
            [r.key for r in rejected],
            [r.payload for r in rejected],
        )
        return int(result.rsplit(" ", 1)[1])

    async def load_states(self, patient_ids: Sequence[str] | None = None) -> dict[str, PatientState]:
        """Current states (all, or the given patients), for tests, the API and replays' comparisons."""
        async with self._pool.acquire() as connection:
            if patient_ids is None:
                rows = await connection.fetch(
                    "SELECT patient_id, state::text AS state FROM patient_state WHERE state <> '{}'::jsonb"
                )
            else:
                rows = await connection.fetch(
                    "SELECT patient_id, state::text AS state FROM patient_state "
                    "WHERE patient_id = ANY($1::text[]) AND state <> '{}'::jsonb",
                    list(patient_ids),
                )
        return {row["patient_id"]: load_state(row["state"]) for row in rows}


__all__ = [
    "AcceptedEvent",
    "BatchOutcome",
    "EngagementStore",
    "RejectedRecord",
    "dump_state",
    "load_state",
]

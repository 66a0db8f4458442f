"""The outbox relay: alert events committed with their cause go out to ``iop.alerts.v1``.

At least once: a row is marked published only after the broker acknowledged it, in the transaction
that read it, so a crash in between publishes it again (consumers dedupe by the event id). Order: a
Postgres advisory lock lets one relay run at a time across all workers, and rows go out in id order,
so each patient's alert events reach the topic (keyed by patient) in the order they were decided.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import asyncpg

from iopcare.contract.kafka_binding import structured_headers

log = logging.getLogger(__name__)

_RELAY_LOCK = 4_242_001  # advisory lock id of the relay (the migrations use another)


@dataclass(frozen=True)
class OutboundRecord:
    """One alert event for the alerts topic."""

    key: bytes  # the patient id: a patient's alert events stay in one partition, in order
    value: bytes  # the encoded CloudEvent
    notification_group: str | None = None  # events decided together for the patient share one

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers: the structured-mode content type (the CloudEvents Kafka binding) and the
        notification group, so a consumer can notify once per group."""
        if self.notification_group is None:
            return structured_headers()
        return [*structured_headers(), (NOTIFICATION_GROUP_HEADER, self.notification_group.encode())]


NOTIFICATION_GROUP_HEADER = "iopcare-notification-group"


Send = Callable[[Sequence[OutboundRecord]], Awaitable[None]]
"""Publishes records and returns once the broker acknowledged every one (raises otherwise)."""


class OutboxRelay:
    """Moves unpublished alert events from the outbox to the broker, in batches."""

    def __init__(self, pool: asyncpg.Pool, send: Send, batch_size: int = 500) -> None:
        self._pool = pool
        self._send = send
        self._batch_size = batch_size

    async def relay_once(self) -> int:
        """Publish one batch; returns how many were published (0: nothing to do or another relay runs)."""
        async with self._pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", _RELAY_LOCK):
                return 0
            rows = await connection.fetch(
                """
                SELECT id, patient_id, payload::text AS payload, notification_group::text AS grp FROM outbox
                WHERE published_at IS NULL AND kind LIKE 'iop.alert.%'
                ORDER BY id LIMIT $1
                """,
                self._batch_size,
            )
            if not rows:
                return 0
            await self._send(
                [OutboundRecord(r["patient_id"].encode(), r["payload"].encode(), r["grp"]) for r in rows]
            )
            await connection.execute(
                "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", [r["id"] for r in rows]
            )
        return len(rows)

    async def drain(self, max_batches: int = 20) -> int:
        """Publish until nothing is left (or ``max_batches``); returns the count."""
        total = 0
        for _ in range(max_batches):
            sent = await self.relay_once()
            total += sent
            if sent < self._batch_size:
                break
        return total


__all__ = ["NOTIFICATION_GROUP_HEADER", "OutboundRecord", "OutboxRelay", "Send"]

"""Alert events in, delivery rows out: the dispatcher's consumer of ``iop.alerts.v1``.

At least once into the table: a batch of records becomes delivery rows in one Postgres transaction,
with the position after it (:mod:`iopcare.dispatcher.progress`, where a new consumer group starts),
and only after it committed is the Kafka offset committed. A crash in between hands the records to
the next consumer, and :func:`~iopcare.dispatcher.webhooks.plan_deliveries` recognises their event
ids, so a redelivered record never makes a second POST. A record that is not an alert event is
logged (partition, offset, reason; never its content) and skipped: it stays on the topic.

aiokafka rather than Faust: the dispatcher needs one plain consumer with manual commits, no tables,
agents or changelogs, and Faust would add its group-join and startup machinery for nothing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaConsumer  # type: ignore[import-untyped]
from aiokafka.errors import CommitFailedError, KafkaError  # type: ignore[import-untyped]
from pydantic import ValidationError

from iopcare.contract import DEFAULT_MAX_BYTES, AlertEvent
from iopcare.dispatcher import metrics
from iopcare.dispatcher.progress import next_offsets, record_progress
from iopcare.dispatcher.relay import NOTIFICATION_GROUP_HEADER
from iopcare.dispatcher.webhooks.policy import Routed, notice_of, plan_deliveries, recipients
from iopcare.dispatcher.webhooks.store import apply_plan, lock_deliveries, subscriptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertRecord:
    """One record of the alerts topic, as the intake needs it."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()


@dataclass(frozen=True)
class Taken:
    """An alert event and the notification group it belongs to."""

    event: AlertEvent
    notification_group: str


class NotAnAlertEvent(ValueError):
    """A record on the alerts topic that is not a valid alert event; the message says why, without
    any of the record's content."""


def decode_alert_record(record: AlertRecord) -> Taken:
    """The alert event of a record and its notification group (the ``iopcare-notification-group``
    header; an event without one is a group of its own). Raises :class:`NotAnAlertEvent`."""
    if record.value is None:
        raise NotAnAlertEvent("empty record")
    if len(record.value) > DEFAULT_MAX_BYTES:
        raise NotAnAlertEvent(f"oversized: {len(record.value)} bytes")
    try:
        event = AlertEvent.model_validate_json(record.value)
    except ValidationError as exc:
        kinds = sorted({e["type"] for e in exc.errors(include_input=False, include_url=False)})
        raise NotAnAlertEvent(f"schema_violation: {', '.join(kinds)}") from None
    if record.key is not None and record.key != event.subject.encode():
        raise NotAnAlertEvent("key_mismatch: the record key differs from the subject")
    group = event.id
    for name, value in record.headers:
        if name == NOTIFICATION_GROUP_HEADER:
            try:
                group = str(uuid.UUID(value.decode("ascii")))
            except (UnicodeDecodeError, ValueError):
                log.warning(
                    "alerts record %d@%d: malformed notification group header; notifying alone",
                    record.partition,
                    record.offset,
                )
    return Taken(event, group)


class AlertIntake:
    """Turns alert events into delivery rows for the endpoints subscribed to them."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        topic: str,
        public_url: str,
        coalesce_seconds: float,
        on_new: Callable[[], None] = lambda: None,
    ) -> None:
        self._pool = pool
        self._topic = topic
        self._public_url = public_url
        self._coalesce_seconds = coalesce_seconds
        self._on_new = on_new

    async def take_in(self, records: Sequence[AlertRecord]) -> int:
        """Write the deliveries of a batch of records and the position after it (iopcare.dispatcher.
        progress) in one transaction; returns how many alert events it held. Raises on a database
        failure (nothing written: the caller retries)."""
        after = next_offsets((r.partition, r.offset) for r in records)
        taken: list[Taken] = []
        for record in records:
            try:
                item = decode_alert_record(record)
            except NotAnAlertEvent as exc:
                metrics.ALERT_EVENTS_CONSUMED.labels("invalid").inc()
                log.warning("alerts record %d@%d skipped: %s", record.partition, record.offset, exc)
                continue
            taken.append(item)
        for attempt in range(3):
            try:
                created = await self._write(taken, after)
                break
            except asyncpg.UniqueViolationError:  # another consumer created a row of the same group
                if attempt == 2:
                    raise
                metrics.TAKE_IN_RETRIES.inc()
        for item in taken:
            metrics.ALERT_EVENTS_CONSUMED.labels(item.event.kind).inc()
        if created:
            self._on_new()
        return len(taken)

    async def _write(self, taken: Sequence[Taken], after: Mapping[int, int]) -> bool:
        owners = sorted(
            {t.event.data.counselor_id for t in taken}
            | {t.event.data.supervisor_id for t in taken if t.event.data.supervisor_id}
        )
        async with self._pool.acquire() as connection, connection.transaction():
            await record_progress(connection, self._topic, after)
            if not taken:
                return False
            subs = await subscriptions(connection, owners)
            routed = [
                Routed(endpoint, t.notification_group, t.event.subject, notice_of(t.event, self._public_url))
                for t in taken
                for endpoint in recipients(t.event, subs)
            ]
            pairs = sorted({(r.endpoint_id, r.notification_group) for r in routed})
            plan = plan_deliveries(routed, await lock_deliveries(connection, pairs))
            await apply_plan(connection, plan, self._coalesce_seconds)
        return not plan.empty


class AlertEventConsumer:
    """Consumes the alerts topic in batches, commits offsets after each batch is in Postgres."""

    def __init__(self, consumer: AIOKafkaConsumer, intake: AlertIntake, max_records: int = 500) -> None:
        self._consumer = consumer
        self._intake = intake
        self._max_records = max_records

    async def run(self, stopping: asyncio.Event) -> None:
        """Consume until ``stopping`` is set; the batch in hand is finished (written and committed)."""
        while not stopping.is_set():
            batches = await self._consumer.getmany(timeout_ms=500, max_records=self._max_records)
            records = [
                AlertRecord(r.partition, r.offset, r.key, r.value, tuple(r.headers or ()))
                for partition_records in batches.values()
                for r in partition_records
            ]
            if not records:
                continue
            await self._take_in_until_written(records)
            try:
                await self._consumer.commit()
            except (CommitFailedError, KafkaError) as exc:
                # A rebalance took the partitions away: their next owner takes the records in again
                # and finds their rows (deduplicated by event id).
                log.warning(
                    "offset commit failed (%s); the records will be taken in again", type(exc).__name__
                )

    async def _take_in_until_written(self, records: Sequence[AlertRecord]) -> None:
        """Retry a batch until Postgres takes it; offsets move on only after that."""
        delay = 0.2
        while True:
            try:
                await self._intake.take_in(records)
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                metrics.TAKE_IN_RETRIES.inc()
                log.warning(
                    "taking in %d alert records failed (%s); retry in %.1fs",
                    len(records),
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

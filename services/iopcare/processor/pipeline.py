"""One batch of inbound Kafka records, from bytes to a committed Postgres transaction.

Framework-free on purpose: the Faust agent (``processor.app``) hands records in and acks them when
``handle`` returns; tests and benchmarks can drive the same code. Nothing here lets a bad record
escape as an exception: each one becomes a dead letter with its reason, and the rest of the batch is
processed. That includes a valid event that Postgres refuses or whose processing raises (a defect in a
rule, say): the batch is bisected down to it, it is dead-lettered (``store_rejected``,
``processing_failed``) and the others commit, so one poison event never stalls its partition. Only an
unreachable Postgres stops progress, and then the batch is retried, not acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from iopcare.contract import (
    MAX_CLOCK_SKEW,
    AlertEvent,
    DeadLetterReason,
    InvalidEvent,
    check_event_time,
    decode_event,
)
from iopcare.contract.kafka_binding import structured_value
from iopcare.processor import metrics
from iopcare.store.engagement import BatchOutcome, EngagementStore
from iopcare.store.events import AcceptedEvent, RejectedRecord
from iopcare.tracing import parse_traceparent, tracing

log = logging.getLogger(__name__)

# Errors that mean "Postgres is not there right now": wait and retry the same batch.
TRANSIENT_STORE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    # A connection cut in the middle of an operation (Postgres stopped during COMMIT) can leave
    # asyncpg's protocol in a state it reports as this client-side error, not as a lost connection.
    asyncpg.InternalClientError,
    # A deadlock or serialization failure rolled the batch back: the same batch is retried whole.
    asyncpg.TransactionRollbackError,
)


@dataclass(frozen=True)
class Record:
    """The parts of a Kafka record the pipeline needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None  # Kafka record timestamp, seconds since the epoch
    headers: Sequence[tuple[str, bytes]] = ()  # ce_* attributes in binary mode, content-type


def failure_detail(exc: BaseException) -> str:
    """The exception's class and where it was raised (file, line, function), never its message:
    a message may quote the event (``KeyError('p-…')``), and the detail travels in DLQ headers."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    where = "/".join(Path(last.filename).parts[-3:])
    return f"{type(exc).__name__} at {where}:{last.lineno} in {last.name}"


DeadLetterSink = Callable[[Sequence[RejectedRecord]], Awaitable[None]]


class EngagementPipeline:
    """Decode, dead-letter what is invalid, commit the rest in one transaction."""

    def __init__(
        self,
        store: EngagementStore,
        send_dead_letters: DeadLetterSink,
        *,
        max_clock_skew: timedelta = MAX_CLOCK_SKEW,
        retry_initial_seconds: float = 0.2,
        retry_max_seconds: float = 10.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._send_dead_letters = send_dead_letters
        self._max_clock_skew = max_clock_skew
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._clock = clock

    def classify(self, records: Sequence[Record]) -> tuple[list[AcceptedEvent], list[RejectedRecord]]:
        """Split records into valid events and dead letters (with the reason)."""
        accepted: list[AcceptedEvent] = []
        rejected: list[RejectedRecord] = []
        now = self._clock()
        for record in records:
            try:
                event = decode_event(structured_value(record.value, record.headers), key=record.key)
                check_event_time(event, now, self._max_clock_skew)
            except InvalidEvent as exc:
                rejected.append(self._rejected(record, exc.reason, exc.detail))
                continue
            accepted.append(AcceptedEvent(event, record.partition, record.offset))
        return accepted, rejected

    @staticmethod
    def _rejected(record: Record, reason: DeadLetterReason, detail: str) -> RejectedRecord:
        return RejectedRecord(
            reason=reason,
            detail=detail,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            payload=record.value,
            headers=tuple(record.headers),
        )

    async def handle(self, records: Sequence[Record]) -> BatchOutcome:
        """Process one batch. Returns once its effects are durable; the caller may then ack."""
        if not records:
            return BatchOutcome()
        metrics.BATCH_SIZE.observe(len(records))
        accepted, rejected = self.classify(records)
        by_position = {(r.partition, r.offset): r for r in records}
        outcome, rejected = await self._commit(accepted, rejected, by_position)
        if rejected:
            # Postgres has the dead-letter rows; the topic gets the original bytes. Both before the
            # ack, so a crash in between replays the batch: the rows dedupe, the topic may repeat.
            await self._send_dead_letters(rejected)
            for item in rejected:
                metrics.DEAD_LETTERS.labels(item.reason).inc()
                metrics.EVENTS.labels("invalid", "dead_lettered").inc()
        self._observe(records, outcome)
        return outcome

    async def _commit(
        self,
        accepted: list[AcceptedEvent],
        rejected: list[RejectedRecord],
        by_position: dict[tuple[int, int], Record],
    ) -> tuple[BatchOutcome, list[RejectedRecord]]:
        try:
            return await self._commit_with_retry(accepted, rejected), rejected
        except Exception as exc:  # transient failures were retried: this is the batch itself
            if len(accepted) <= 1:
                if not accepted:
                    raise
                item = accepted[0]
                bad = self._failed(by_position[(item.partition, item.offset)], exc)
                return await self._commit_with_retry([], [*rejected, bad]), [*rejected, bad]
            # Isolate the offending event by halves; the good ones commit.
            middle = len(accepted) // 2
            first, rejected = await self._commit(accepted[:middle], rejected, by_position)
            second, rejected_second = await self._commit(accepted[middle:], [], by_position)
            first.merge(second)
            return first, rejected + rejected_second

    def _failed(self, record: Record, exc: Exception) -> RejectedRecord:
        """The dead letter of one valid event that cannot be committed: Postgres refused a value
        (``store_rejected``), or deciding it raised (``processing_failed``, a defect in a rule or
        the domain: fix it, then send the event again)."""
        if isinstance(exc, asyncpg.PostgresError):
            log.warning("event rejected by the store: %s", type(exc).__name__)
            return self._rejected(record, "store_rejected", type(exc).__name__)
        detail = failure_detail(exc)
        log.error("processing an event failed: %s", detail)
        metrics.PROCESSING_FAILURES.inc()
        return self._rejected(record, "processing_failed", detail)

    async def _commit_with_retry(
        self, accepted: list[AcceptedEvent], rejected: list[RejectedRecord]
    ) -> BatchOutcome:
        delay = self._retry_initial
        while True:
            started = time.perf_counter()
            try:
                outcome = await self._store.commit_batch(accepted, rejected)
            except TRANSIENT_STORE_ERRORS as exc:
                metrics.STORE_RETRIES.inc()
                log.warning(
                    "Postgres unavailable (%s); retrying the batch in %.1fs", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)
                continue
            metrics.COMMIT_SECONDS.observe(time.perf_counter() - started)
            return outcome

    def _observe(self, records: Sequence[Record], outcome: BatchOutcome) -> None:
        now = self._clock()
        wall = now.timestamp()
        for record in records:
            if record.timestamp is not None:
                metrics.ARRIVAL_TO_COMMIT_SECONDS.observe(max(0.0, wall - record.timestamp))
        for event in outcome.applied:
            metrics.EVENTS.labels(event.type, "applied").inc()
            metrics.EVENT_TIME_TO_COMMIT_SECONDS.observe(max(0.0, (now - event.time).total_seconds()))
        if outcome.duplicates:
            metrics.EVENTS.labels("any", "duplicate").inc(outcome.duplicates)
        if outcome.late:
            metrics.LATE_EVENTS.inc(outcome.late)
        for held in outcome.quarantined:
            metrics.EVENTS.labels(held.event.type, "quarantined").inc()
            metrics.QUARANTINED.labels(held.party.kind, held.reason).inc()
        for released in outcome.released:
            metrics.RELEASED.labels(released.party.kind).inc()
        for change in outcome.alert_changes:
            metrics.ALERT_CHANGES.labels(change.kind, change.alert.severity).inc()
        log_alert_events(outcome.alert_events)


def log_alert_events(events: Sequence[AlertEvent]) -> None:
    """One log line per alert event committed, under the event's trace: what changed, by which
    rule, at which severity and tier (codes and the alert's id; never the patient or the text)."""
    for event in events:
        trace = parse_traceparent(event.traceparent)
        fields = {
            "kind": event.kind,
            "alert_id": event.data.alert_id,
            "rule_id": event.data.rule_id,
            "severity": event.data.severity,
            "tier": event.data.tier,
        }
        # A repeat trigger (updated) is routine; every other change is worth a line at INFO.
        level = logging.DEBUG if event.kind == "updated" else logging.INFO
        with tracing(trace) if trace is not None else contextlib.nullcontext():
            log.log(level, "alert %s", event.kind, extra=fields)

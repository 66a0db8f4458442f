"""The processor: a Faust app whose one agent consumes ``iop.events.v1`` in batches.

Several workers started with the same app id form one consumer group and share the partitions;
a patient (= a Kafka key) is owned by one worker at a time. Per batch, the agent hands the raw
records to :class:`~iopcare.processor.pipeline.EngagementPipeline` and acks them only once its
Postgres transaction has committed (``noack_take``: Faust must not ack on its own, and an exception
escaping the agent would ack the batch, so none is allowed to escape).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg
import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iopcare.contract import DEFAULT_MAX_BYTES, DeadLetterHeaders, InvalidEvent
from iopcare.contract.kafka_binding import header_pairs
from iopcare.dispatcher.relay import OutboundRecord, OutboxRelay
from iopcare.endpoints import Endpoints
from iopcare.grouplag import GroupLagWatch
from iopcare.health import connect_pool, readiness
from iopcare.processor import metrics
from iopcare.processor.assignment import PartitionHolding
from iopcare.processor.lag import Applied, LagTracker
from iopcare.processor.pipeline import EngagementPipeline, Record
from iopcare.processor.sweeper import Sweeper
from iopcare.processor.transport import use_fetch_wait
from iopcare.rulepacks import DEFAULT_PACK, load_pack
from iopcare.settings import Settings
from iopcare.store.engagement import EngagementStore
from iopcare.store.events import RejectedRecord, delete_old_dead_letters
from iopcare.topics import partition_count

log = logging.getLogger(__name__)


def dead_letter_message(item: RejectedRecord) -> tuple[bytes | None, bytes, list[tuple[str, bytes]]]:
    """(key, value, headers) of a record's dead-letter message (header schema in schemas/).

    The value is the original bytes, but never more than ``DEFAULT_MAX_BYTES`` (what the contract
    reads): a 1 MB+ message that the broker took would not fit under the producer's (and a default
    Kafka topic's) 1 MB limit, the send would fail and the batch could never be acked. Its first
    bytes go to the topic, with the original size in a header; the ``dead_letters`` row keeps all.
    """
    truncated = len(item.payload) > DEFAULT_MAX_BYTES
    headers = DeadLetterHeaders.for_failure(
        InvalidEvent(item.reason, item.detail),
        topic=item.topic,
        partition=item.partition,
        offset=item.offset,
        original_bytes=len(item.payload) if truncated else None,
    ).to_kafka()
    # The record's own headers go along (a binary-mode event's attributes are headers), so that the
    # dead letter, fixed, can be sent again as it was.
    own = [(name, value) for name, value in item.headers if not name.startswith("iopcare-dlq-")]
    return item.key, item.payload[:DEFAULT_MAX_BYTES] if truncated else item.payload, own + headers


def build_app(settings: Settings, endpoints: Endpoints, *, app_id: str = "iopcare-processor") -> faust.App:
    """A Faust app for the engagement processor. Raises :class:`RulePackError` for an invalid pack."""
    pack = load_pack(settings.rule_pack) if settings.rule_pack else DEFAULT_PACK
    app = faust.App(
        app_id,
        # iopcare:// is Faust's aiokafka transport with the fetch wait below (processor/transport.py).
        broker=[f"iopcare://{host}" for host in endpoints.kafka_bootstrap.split(",")],
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=True,
        web_host=settings.worker_web_host,
        web_port=settings.worker_web_port,
        web_in_thread=False,
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=True,
        # No Faust tables: state lives in Postgres. These keep group joins fast
        # (docs/operations.md, "Settings that matter in production").
        broker_rebalance_timeout=settings.broker_rebalance_timeout_seconds,
        broker_session_timeout=settings.broker_session_timeout_seconds,
        broker_heartbeat_interval=settings.broker_heartbeat_interval_seconds,
        broker_commit_every=settings.batch_max_records,
        broker_commit_interval=1.0,
        broker_max_poll_records=settings.batch_max_records,
        stream_buffer_maxsize=max(4096, settings.batch_max_records * 2),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
    )
    use_fetch_wait(app, settings.fetch_max_wait_ms)
    events_topic = app.topic(settings.events_topic, key_type=bytes, value_type=bytes)
    dead_letter_topic = app.topic(settings.dead_letter_topic, key_type=bytes, value_type=bytes)
    alerts_topic = app.topic(settings.alerts_topic, key_type=bytes, value_type=bytes)

    async def send_dead_letters(items: Sequence[RejectedRecord]) -> None:
        await _send_acked(dead_letter_topic, [dead_letter_message(i) for i in items])

    async def send_alert_events(records: Sequence[OutboundRecord]) -> None:
        await _send_acked(alerts_topic, [(r.key, r.value, r.headers()) for r in records])

    parts: list[_Parts] = []
    lag = LagTracker()
    holding = PartitionHolding(settings.worker_unassigned_grace_seconds, time.monotonic())
    group_watch = GroupLagWatch(endpoints.kafka_bootstrap, app_id, settings.events_topic)
    assembling = asyncio.Lock()

    async def connected() -> _Parts:
        """Pool, store, pipeline and sweeper, made once (the agent and the timer both need them)."""
        async with assembling:
            if not parts:
                pool = await connect_pool(endpoints.database_url, settings.database_pool_size)
                store = EngagementStore(
                    pool,
                    pack,
                    clock=settings.clock,
                    partitions=await _events_partitions(endpoints.kafka_bootstrap, settings),
                    intake_supervisor_id=settings.intake_supervisor_id,
                )
                parts.append(
                    _Parts(
                        pool,
                        store,
                        EngagementPipeline(store, send_dead_letters),
                        Sweeper(store, settings.clock),
                        OutboxRelay(pool, send_alert_events),
                    )
                )
        return parts[0]

    @app.agent(events_topic, name="engagement")
    async def engagement(stream: faust.StreamT[bytes]) -> None:
        handler = (await connected()).pipeline
        # noack_take exists on faust-streaming's Stream, not on its StreamT interface.
        async for batch in stream.noack_take(  # type: ignore[attr-defined]
            settings.batch_max_records, within=settings.batch_max_wait_seconds
        ):
            events = list(batch)  # noack_take yields the events themselves
            records = [
                Record(
                    topic=event.message.topic,
                    partition=event.message.partition,
                    offset=event.message.offset,
                    key=event.message.key,
                    value=event.message.value,
                    timestamp=event.message.timestamp,
                    headers=header_pairs(event.message.headers),
                )
                for event in events
            ]
            # Shielded: a shutdown (SIGTERM) lets the batch in flight finish and be acked.
            await asyncio.shield(_until_committed(handler, records))
            lag.applied(Applied(r.partition, r.offset, r.timestamp) for r in records)
            for event in events:
                await stream.ack(event)

    @app.page("/metrics")
    async def metrics_page(_web: faust.web.View, _request: faust.web.Request) -> faust.web.Response:
        return _web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.timer(settings.sweep_interval_seconds, name="absence_sweep")  # type: ignore[untyped-decorator]
    async def absence_sweep() -> None:
        await (await connected()).sweeper.tick()

    @app.timer(0.5, name="outbox_relay")  # type: ignore[untyped-decorator]
    async def outbox_relay() -> None:
        try:
            metrics.ALERT_EVENTS_PUBLISHED.inc(await (await connected()).relay.drain())
        except Exception as exc:  # the rows stay unpublished and go out on a later tick
            metrics.RELAY_FAILURES.inc()
            log.warning("outbox relay failed (%s); retrying", type(exc).__name__)

    def held_partitions() -> list[faust.types.TP]:
        """The events topic's partitions this worker holds now; noted for readiness."""
        assigned = [tp for tp in app.consumer.assignment() if tp.topic == settings.events_topic]
        holding.observe(len(assigned), time.monotonic())
        metrics.ASSIGNED_PARTITIONS.set(len(assigned))
        return assigned

    @app.timer(5.0, name="consumer_lag")  # type: ignore[untyped-decorator]
    async def consumer_lag() -> None:
        consumer = app.consumer
        assigned = held_partitions()
        lag.forget(tp.partition for tp in assigned)
        try:
            highwaters = await consumer.highwaters(*assigned) if assigned else {}
            positions = {}
            for tp in assigned:
                position = await consumer.position(tp)
                if position is not None:
                    positions[tp.partition] = position
        except Exception as exc:  # a rebalance in progress, the broker away: measure next time
            log.debug("consumer lag not measured (%s)", type(exc).__name__)
            return
        measured = lag.measure({tp.partition: hw for tp, hw in highwaters.items()}, positions, time.time())
        metrics.CONSUMER_LAG_MESSAGES.clear()
        for partition, behind in measured.messages.items():
            metrics.CONSUMER_LAG_MESSAGES.labels(str(partition)).set(behind)
        metrics.CONSUMER_LAG_SECONDS.set(measured.seconds)

    @app.timer(settings.group_lag_interval_seconds, name="group_lag")  # type: ignore[untyped-decorator]
    async def group_lag() -> None:
        """The whole group's lag from the broker (iopcare.grouplag), held partitions or not."""
        measured = await group_watch.tick()
        if measured is not None and measured.partitions and parts:
            parts[0].store.use_partitions(len(measured.partitions))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # faust's stub wants a sync receiver
    async def close_group_watch(_sender: object, **_kwargs: object) -> None:
        await group_watch.close()

    @app.timer(3600.0, name="dead_letter_retention")  # type: ignore[untyped-decorator]
    async def dead_letter_retention() -> None:
        if settings.dead_letter_retention_days == 0:
            return
        try:
            async with (await connected()).pool.acquire() as connection:
                deleted = await delete_old_dead_letters(connection, settings.dead_letter_retention_days)
        except Exception as exc:  # the next hour's run deletes them
            log.warning("old dead letters not deleted (%s); retrying in an hour", type(exc).__name__)
            return
        if deleted:
            log.info(
                "deleted old dead letters",
                extra={"deleted": deleted, "retention_days": settings.dead_letter_retention_days},
            )

    @app.page("/healthz")
    async def healthz(_web: faust.web.View, _request: faust.web.Request) -> faust.web.Response:
        return _web.json({"status": "alive"})

    @app.page("/readyz")
    async def readyz(_web: faust.web.View, _request: faust.web.Request) -> faust.web.Response:
        ready, checks = await readiness(parts[0].pool if parts else None, endpoints.kafka_bootstrap)
        with contextlib.suppress(Exception):  # no consumer yet: it holds nothing, as recorded
            held_partitions()
        checks["partitions"] = holding.ready(time.monotonic())
        ready = ready and checks["partitions"]
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return _web.json(body, status=200 if ready else 503)

    return app


async def _until_committed(pipeline: EngagementPipeline, records: Sequence[Record]) -> None:
    """``pipeline.handle(records)`` until it succeeds. An exception escaping the agent makes Faust
    ack the batch and restart the agent past it: the batch would be lost without its transaction
    (the reliability suite's Postgres outage lost 386 events that way). The pipeline already retries
    what it knows as transient; anything else it let through is retried here with backoff. A batch
    that can never commit stalls its partition (consumer lag alerts) instead of vanishing."""
    delay = 0.2
    while True:
        try:
            await pipeline.handle(records)
            return
        except Exception as exc:
            metrics.STORE_RETRIES.inc()
            log.error("batch not committed (%s); retrying it in %.1fs", type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


async def _send_acked(
    topic: faust.TopicT, records: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]]
) -> None:
    """Send records and return once the broker acknowledged every one (the caller acks after)."""
    pending = [await topic.send(key=key, value=value, headers=headers) for key, value, headers in records]
    await asyncio.gather(*pending)


async def _events_partitions(bootstrap: str, settings: Settings) -> int:
    """The events topic's partition count from the broker's metadata, which the stream clock needs
    (a topic made with fewer partitions than IOPCARE_TOPIC_PARTITIONS would otherwise never start
    it); the setting only while the broker does not answer or the topic is not there yet (the
    group lag timer corrects it once it is)."""
    try:
        count = await asyncio.to_thread(partition_count, bootstrap, settings.events_topic)
    except Exception as exc:  # kafka-python raises its own errors and OSError
        log.warning("partition count not read from the broker (%s); using the setting", type(exc).__name__)
        return settings.topic_partitions
    if count is None:
        return settings.topic_partitions
    if count != settings.topic_partitions:
        log.info(
            "the events topic has %d partitions (IOPCARE_TOPIC_PARTITIONS says %d): the stream clock uses %d",
            count,
            settings.topic_partitions,
            count,
        )
    return count


@dataclass(frozen=True)
class _Parts:
    pool: asyncpg.Pool
    store: EngagementStore
    pipeline: EngagementPipeline
    sweeper: Sweeper
    relay: OutboxRelay

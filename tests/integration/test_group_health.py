"""Health that tells the truth about the consumer group: real broker, Postgres and worker processes.

A worker that holds no partition is not ready; the group's lag comes from the broker's committed
offsets, so it shows while the group is stalled and while it has no members at all."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import asyncpg
import pytest

from iopcare.contract import InboundEvent
from iopcare.contract.examples import example_event
from iopcare.endpoints import Endpoints
from iopcare.grouplag import GroupLagProbe
from iopcare.publish import EventPublisher
from iopcare.settings import Settings
from iopcare.topics import ensure_topics
from tests.integration.workers import WorkerProcess, wait_for_count

pytestmark = pytest.mark.integration

FAST = {"IOPCARE_WORKER_UNASSIGNED_GRACE_SECONDS": "3", "IOPCARE_GROUP_LAG_INTERVAL_SECONDS": "1"}


def _readiness(worker: WorkerProcess) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{worker.url}/readyz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _checkins(count: int, prefix: str) -> list[InboundEvent]:
    base = example_event("iop.checkin.submitted")
    return [
        base.model_copy(update={"subject": f"{prefix}-{n % 8}", "id": f"{prefix}-{n}"}) for n in range(count)
    ]


def _publish(kafka: str, topic: str, events: list[InboundEvent]) -> None:
    with EventPublisher(kafka, topic) as publisher:
        for event in events:
            publisher.publish(event)


async def _group_lag(worker: WorkerProcess, group: str) -> float:
    return await worker.metric("iopcare_consumer_group_lag_messages", group=group)


async def _until(check, within: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} not seen within {within}s (last: {last})")


async def test_a_worker_holding_no_partition_is_not_ready_until_it_gets_one(
    endpoints: Endpoints, unique_topics: Settings, clean_db: str, tmp_path: Path
) -> None:
    """Two workers on a one-partition topic: one holds it, the other none. Past the grace period
    the idle one answers 503 with ``partitions: false``; when the holder leaves, it takes the
    partition over and is ready again."""
    topics = unique_topics.model_copy(update={"topic_partitions": 1})
    ensure_topics(endpoints.kafka_bootstrap, topics)
    group = f"test-processor-{uuid.uuid4().hex[:6]}"
    workers = [
        WorkerProcess(endpoints.kafka_bootstrap, clean_db, topics, tmp_path, group, name=n, extra_env=FAST)
        for n in ("w1", "w2")
    ]
    try:
        for w in workers:
            await w.wait_healthy()

        async def split() -> tuple[WorkerProcess, WorkerProcess] | None:
            held = [await w.metric("iopcare_worker_assigned_partitions") for w in workers]
            statuses = [_readiness(w) for w in workers]
            if sorted(held) == [0, 1] and sorted(s for s, _ in statuses) == [200, 503]:
                holder = workers[held.index(1)]
                return holder, workers[1 - held.index(1)]
            return None

        holder, idle = await _until(split, 90, "one worker ready with the partition, one not ready")
        status, body = _readiness(idle)
        assert status == 503
        assert body == {
            "status": "not ready",
            "checks": {"postgres": True, "broker": True, "partitions": False},
        }
        assert _readiness(holder) == (
            200,
            {"status": "ready", "checks": {"postgres": True, "broker": True, "partitions": True}},
        )

        # Both report the whole group: two members, one partition, nothing behind.
        for w in workers:
            await _until(lambda w=w: w.metric("iopcare_consumer_group_members", group=group), 30, "members")
            assert await w.metric("iopcare_consumer_group_members", group=group) == 2
            assert await w.metric("iopcare_topic_partitions", group=group) == 1

        assert holder.stop() == 0, holder.log()[-3000:]

        async def took_over() -> bool:
            held = await idle.metric("iopcare_worker_assigned_partitions")
            return held == 1 and _readiness(idle)[0] == 200

        await _until(took_over, 90, "the idle worker taking the partition over and becoming ready")
    finally:
        for w in workers:
            assert w.stop() in (0, -15), w.log()[-3000:]


async def test_group_lag_shows_on_a_stalled_group_and_on_a_group_without_workers(
    endpoints: Endpoints, topics: Settings, clean_db: str, tmp_path: Path
) -> None:
    """The worker's group lag counts what the group has not committed, from the broker: it rises
    while a lock stops the worker's commits and falls to 0 after; with the worker gone, the probe
    still sees the backlog."""
    group = f"test-processor-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(endpoints.kafka_bootstrap, clean_db, topics, tmp_path, group, extra_env=FAST)
    try:
        await worker.wait_healthy()
        _publish(endpoints.kafka_bootstrap, topics.events_topic, _checkins(20, "before"))
        assert await wait_for_count(clean_db, "SELECT count(*) FROM event_log", 20) == 20

        async def lag_is(expected: float) -> bool:
            return (
                await _group_lag(worker, group) == expected
                and await worker.metric("iopcare_topic_partitions", group=group) == 4
            )

        await _until(lambda: lag_is(0), 60, "group lag 0 once caught up")

        # Stall the group: every batch waits for a lock on event_log, so nothing is committed.
        lock = await asyncpg.connect(clean_db)
        try:
            transaction = lock.transaction()
            await transaction.start()
            await lock.execute("LOCK TABLE event_log IN ACCESS EXCLUSIVE MODE")
            _publish(endpoints.kafka_bootstrap, topics.events_topic, _checkins(30, "stalled"))
            await _until(lambda: lag_is(30), 60, "group lag 30 while the group is stalled")
            # Its readiness is about partitions and reachability, not progress: still ready (the
            # lag alerts are what tell the operator).
            assert _readiness(worker)[0] == 200
            await transaction.rollback()
        finally:
            await lock.close()
        assert await wait_for_count(clean_db, "SELECT count(*) FROM event_log", 50) == 50
        await _until(lambda: lag_is(0), 60, "group lag 0 after the stall")
    finally:
        assert worker.stop() in (0, -15), worker.log()[-3000:]

    # No worker left: the broker still knows what the group committed, and the backlog shows.
    # (Members are not asserted: the embedded broker, Tansu, keeps listing a member that left;
    # Apache Kafka drops it. docs/operations.md, "Consumer group health".)
    _publish(endpoints.kafka_bootstrap, topics.events_topic, _checkins(10, "after"))
    probe = GroupLagProbe(endpoints.kafka_bootstrap, group, topics.events_topic)
    await probe.start()
    try:
        lag = await probe.measure()
    finally:
        await probe.close()
    assert (lag.behind, len(lag.partitions)) == (10, 4)
    assert sorted(p.partition for p in lag.partitions) == [0, 1, 2, 3]

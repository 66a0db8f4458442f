"""Consumer-group lag as the broker sees it: committed offsets against the end of every partition.

A worker's own lag (:mod:`iopcare.processor.lag`) covers only the partitions it is assigned, so a
group whose members hold no partition, or whose workers are all gone, reports nothing behind. This
asks the broker instead, the way ``kafka-consumer-groups --describe`` does: per partition of the
topic, the log's end (high-water mark) minus the group's committed offset. A partition the group
has never committed to counts from the log's start, since the group reads it from the earliest
record (``auto.offset.reset=earliest``). It also reports the group's state and member count.

Every worker (and every dispatcher, for its own group) measures the whole group; Prometheus takes
the largest figure per partition (deploy/prometheus/rules). The figures carry the group and
partition only, never a key or a record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient  # type: ignore[import-untyped]
from prometheus_client import Gauge

log = logging.getLogger(__name__)

GROUP_LAG_MESSAGES = Gauge(
    "iopcare_consumer_group_lag_messages",
    "Records of the topic the consumer group has not committed (end offset minus committed offset, "
    "from the broker), by partition, whoever holds the partition.",
    ["group", "partition"],
)
GROUP_COMMITTED_OFFSET = Gauge(
    "iopcare_consumer_group_committed_offset",
    "The consumer group's committed offset per partition (the log's start where it never committed).",
    ["group", "partition"],
)
GROUP_MEMBERS = Gauge(
    "iopcare_consumer_group_members", "Members of the consumer group, as its coordinator reports.", ["group"]
)
TOPIC_PARTITIONS = Gauge(
    "iopcare_topic_partitions", "Partitions of the consumed topic, from the broker's metadata.", ["group"]
)


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    committed: int  # the offset the group resumes from (the log's start if it never committed)
    end: int  # the high-water mark: the next offset the broker will write

    @property
    def behind(self) -> int:
        return max(0, self.end - self.committed)


@dataclass(frozen=True)
class GroupLag:
    group: str
    topic: str
    partitions: tuple[PartitionLag, ...]
    members: int | None  # None: the coordinator did not say

    @property
    def behind(self) -> int:
        return sum(p.behind for p in self.partitions)


def group_lag(
    group: str,
    topic: str,
    committed: Mapping[int, int],
    starts: Mapping[int, int],
    ends: Mapping[int, int],
    members: int | None,
) -> GroupLag:
    """The lag of ``group`` over every partition in ``ends``. ``committed`` holds the group's
    committed offsets (a negative one, or none, means it never committed there)."""
    partitions = []
    for partition in sorted(ends):
        start = starts.get(partition, 0)
        offset = committed.get(partition, -1)
        partitions.append(PartitionLag(partition, offset if offset >= 0 else start, ends[partition]))
    return GroupLag(group, topic, tuple(partitions), members)


class GroupLagProbe:
    """Measures one group's lag on one topic through the broker's admin API. :meth:`start` it once,
    :meth:`measure` as often as wanted, :meth:`close` at the end."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self.group = group
        self.topic = topic
        self._admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{group}-lag")
        # A consumer without a group asks for any partition's offsets and assigns itself nothing.
        self._offsets = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, client_id=f"{group}-lag")
        self._started = False

    async def start(self) -> None:
        await self._admin.start()
        await self._offsets.start()
        self._started = True

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self._offsets.stop()
            await self._admin.close()

    async def measure(self) -> GroupLag:
        """The group's lag now. Raises the client's error when the broker does not answer."""
        tps = [TopicPartition(self.topic, p) for p in await self._partitions()]
        if not tps:
            return GroupLag(self.group, self.topic, (), await self._members())
        ends = await self._offsets.end_offsets(tps)
        starts = await self._offsets.beginning_offsets(tps)
        committed = await self._admin.list_consumer_group_offsets(self.group, partitions=tps)
        return group_lag(
            self.group,
            self.topic,
            {tp.partition: meta.offset for tp, meta in committed.items()},
            {tp.partition: offset for tp, offset in starts.items()},
            {tp.partition: offset for tp, offset in ends.items()},
            await self._members(),
        )

    async def _partitions(self) -> list[int]:
        """The topic's partitions from the broker's metadata (asked each time: partitions can be added)."""
        for topic in await self._admin.describe_topics([self.topic]):
            if topic["topic"] == self.topic and not topic["error_code"]:
                return sorted(p["partition"] for p in topic["partitions"])
        return []

    async def _members(self) -> int | None:
        described = await self._admin.describe_consumer_groups([self.group])
        for response in described:
            for group in response.groups:
                if group[1] == self.group:  # (error_code, group, state, protocol_type, protocol, members)
                    return len(group[5])
        return None


class GroupLagWatch:
    """Measures and exports one group's lag on each :meth:`tick` (a timer's or :meth:`run`'s),
    connecting on the first; a tick never raises (the broker away: the gauges keep their last
    figures, which the lag alerts read as no progress)."""

    def __init__(self, bootstrap: str, group: str, topic: str) -> None:
        self._args = (bootstrap, group, topic)
        self._probe: GroupLagProbe | None = None

    async def tick(self) -> GroupLag | None:
        try:
            if self._probe is None:
                probe = GroupLagProbe(*self._args)
                try:
                    await probe.start()
                except BaseException:
                    await probe.close()
                    raise
                self._probe = probe
            lag = await self._probe.measure()
        except Exception as exc:
            log.warning("group lag not measured (%s); measuring again later", type(exc).__name__)
            return None
        export(lag)
        return lag

    async def run(self, stopping: asyncio.Event, interval_seconds: float) -> None:
        """Tick every ``interval_seconds`` until ``stopping`` is set, then close."""
        try:
            while not stopping.is_set():
                await self.tick()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), interval_seconds)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._probe is not None:
            probe, self._probe = self._probe, None
            await probe.close()


_exported: dict[str, set[str]] = {}  # group -> partitions whose gauges are set


def export(lag: GroupLag) -> None:
    """Set the group's gauges to ``lag``; partitions no longer in the topic lose theirs."""
    now = {str(p.partition) for p in lag.partitions}
    for gone in _exported.get(lag.group, set()) - now:
        GROUP_LAG_MESSAGES.remove(lag.group, gone)
        GROUP_COMMITTED_OFFSET.remove(lag.group, gone)
    _exported[lag.group] = now
    for p in lag.partitions:
        GROUP_LAG_MESSAGES.labels(lag.group, str(p.partition)).set(p.behind)
        GROUP_COMMITTED_OFFSET.labels(lag.group, str(p.partition)).set(p.committed)
    TOPIC_PARTITIONS.labels(lag.group).set(len(lag.partitions))
    if lag.members is not None:
        GROUP_MEMBERS.labels(lag.group).set(lag.members)


__all__ = ["GroupLag", "GroupLagProbe", "GroupLagWatch", "PartitionLag", "export", "group_lag"]

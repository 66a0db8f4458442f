"""Consumer lag: how far this worker's processing is behind the end of its partitions.

In messages: per assigned partition, the log's high-water mark (the next offset the broker will
write) minus the next offset this worker has yet to apply. Counted from what was committed to
Postgres, not from what was fetched: records fetched but still in the batch buffer are lag too.
In seconds: when a partition is behind, the time since the last record applied there was produced
(the next one was produced at that time or later, so this is the most the backlog can be old
as seen from here); 0 when caught up. Operators alert on both growing (deploy/prometheus rules).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Applied:
    partition: int
    offset: int
    timestamp: float | None  # the record's Kafka timestamp, in seconds


@dataclass(frozen=True)
class Lag:
    messages: dict[int, int]  # by partition
    seconds: float  # the largest over the assigned partitions


class LagTracker:
    """Remembers, per partition, the next offset to apply and when the last applied was produced."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}
        self._produced: dict[int, float] = {}

    def applied(self, records: Iterable[Applied]) -> None:
        for record in records:
            if record.offset + 1 > self._next.get(record.partition, -1):
                self._next[record.partition] = record.offset + 1
                if record.timestamp is not None:
                    self._produced[record.partition] = record.timestamp

    def measure(self, highwaters: Mapping[int, int], positions: Mapping[int, int], now: float) -> Lag:
        """Lag over the assigned partitions (``highwaters``); where nothing was applied since the
        assignment, the consumer's fetch position stands in for the next offset to apply."""
        messages: dict[int, int] = {}
        seconds = 0.0
        for partition, highwater in highwaters.items():
            next_offset = self._next.get(partition, positions.get(partition))
            if next_offset is None:
                continue
            behind = max(0, highwater - next_offset)
            messages[partition] = behind
            produced = self._produced.get(partition)
            if behind and produced is not None:
                seconds = max(seconds, now - produced)
        return Lag(messages, seconds)

    def forget(self, keep: Iterable[int]) -> None:
        """Drop partitions no longer assigned (another worker applies them now)."""
        kept = set(keep)
        for partition in list(self._next):
            if partition not in kept:
                self._next.pop(partition, None)
                self._produced.pop(partition, None)


__all__ = ["Applied", "Lag", "LagTracker"]

"""Whether a worker holds partitions, for its readiness: a worker that holds none does no work.

A worker joining the group, or in a rebalance, holds none for a few seconds; past a grace period
it is not ready (``/readyz`` 503, check ``partitions: false``) until it holds one again. A group
that keeps a member without partitions (more workers than partitions, or a broker that never
assigns them) is then visible to the orchestrator and the operator instead of looking healthy.
"""

from __future__ import annotations


class PartitionHolding:
    """Remembers since when a worker has held no partition (monotonic seconds)."""

    def __init__(self, grace_seconds: float, started: float) -> None:
        self.grace_seconds = grace_seconds
        self._without_since: float | None = started  # a worker starts with none

    def observe(self, held: int, now: float) -> None:
        """Record how many partitions the worker holds at ``now``."""
        if held > 0:
            self._without_since = None
        elif self._without_since is None:
            self._without_since = now

    def ready(self, now: float) -> bool:
        """False once the worker has held no partition for longer than the grace period."""
        return self._without_since is None or now - self._without_since <= self.grace_seconds


__all__ = ["PartitionHolding"]

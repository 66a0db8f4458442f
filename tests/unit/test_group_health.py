"""The pure parts of group health: lag from committed offsets, and the readiness grace period."""

from __future__ import annotations

from iopcare.grouplag import GROUP_LAG_MESSAGES, PartitionLag, export, group_lag
from iopcare.processor.assignment import PartitionHolding


def test_lag_counts_from_the_committed_offset_or_from_the_log_start_where_never_committed() -> None:
    lag = group_lag(
        "g",
        "t",
        committed={0: 90, 1: -1},  # -1: the broker's "no offset" for an explicitly asked partition
        starts={0: 0, 1: 40, 2: 5},
        ends={0: 100, 1: 50, 2: 5},
        members=2,
    )
    assert lag.partitions == (PartitionLag(0, 90, 100), PartitionLag(1, 40, 50), PartitionLag(2, 5, 5))
    assert [p.behind for p in lag.partitions] == [10, 10, 0]
    assert lag.behind == 20


def test_a_committed_offset_past_the_end_is_not_negative_lag() -> None:
    assert group_lag("g", "t", {0: 12}, {0: 0}, {0: 10}, None).behind == 0


def test_export_drops_the_gauges_of_partitions_that_are_gone() -> None:
    export(group_lag("unit-g", "t", {0: 1, 1: 1}, {}, {0: 3, 1: 5}, 1))
    assert GROUP_LAG_MESSAGES.labels("unit-g", "1")._value.get() == 4
    export(group_lag("unit-g", "t", {0: 1}, {}, {0: 3}, 1))
    exported = {
        s.labels["partition"]
        for m in GROUP_LAG_MESSAGES.collect()
        for s in m.samples
        if s.labels["group"] == "unit-g"
    }
    assert exported == {"0"}


def test_a_worker_is_ready_within_the_grace_period_and_while_it_holds_partitions() -> None:
    holding = PartitionHolding(grace_seconds=30, started=100.0)
    assert holding.ready(120.0)  # joining
    assert not holding.ready(131.0)  # never got one
    holding.observe(2, 131.0)
    assert holding.ready(131.0) and holding.ready(10_000.0)
    holding.observe(0, 200.0)  # a rebalance took them away
    assert holding.ready(225.0)
    holding.observe(0, 225.0)  # still none: the clock runs from 200, not from the last look
    assert not holding.ready(231.0)
    holding.observe(1, 232.0)
    assert holding.ready(232.0)

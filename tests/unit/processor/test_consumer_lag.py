"""Consumer lag from what was applied, not what was fetched."""

from __future__ import annotations

from iopcare.processor.lag import Applied, LagTracker


def test_lag_counts_from_the_next_offset_to_apply_and_ages_from_the_last_applied_record() -> None:
    lag = LagTracker()
    lag.applied([Applied(0, 9, 1000.0), Applied(0, 7, 990.0), Applied(1, 4, 1005.0)])
    measured = lag.measure({0: 15, 1: 5, 2: 30}, {2: 12}, now=1060.0)
    assert measured.messages == {0: 5, 1: 0, 2: 18}  # partition 2: nothing applied, fetch position
    assert measured.seconds == 60.0  # partition 0 is behind; its last applied record is 60 s old


def test_caught_up_is_zero_seconds_and_revoked_partitions_are_forgotten() -> None:
    lag = LagTracker()
    lag.applied([Applied(3, 99, 10.0)])
    assert lag.measure({3: 100}, {}, now=500.0).seconds == 0.0
    lag.forget([4])
    assert lag.measure({3: 100}, {}, now=500.0).messages == {}

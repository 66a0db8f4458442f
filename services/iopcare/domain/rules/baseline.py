"""Personal baselines: what is usual for this patient, from their own recent record. Pure.

A fixed delta pages on ordinary noise: a rise from 1 to 4 of 10, one skipped daily check-in. The
soft signals are judged instead against the patient's own last ``days`` (14 by default): a robust
centre and spread of their craving (median and median absolute deviation, which one odd day does
not move), and the longest gap between their check-ins. Until there are ``min_checkins`` check-ins
in that window there is no baseline, and the rule pack's floors apply alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from iopcare.domain.engagement import CheckInRecord


@dataclass(frozen=True)
class UsualCraving:
    """The patient's usual craving over a window: median, spread, and the middle half's range."""

    median: float
    spread: float  # median absolute deviation
    low: int  # lower quartile, rounded
    high: int  # upper quartile, rounded
    checkins: int
    since: datetime

    def words(self) -> str:
        """``usually 2-4`` (or ``usually 3``) for an explanation."""
        return f"usually {self.low}" if self.low == self.high else f"usually {self.low}-{self.high}"


def _window(checkins: Sequence[CheckInRecord], before: datetime, days: int) -> list[CheckInRecord]:
    since = before - timedelta(days=days)
    return [c for c in checkins if since <= c.at < before]


def usual_craving(
    checkins: Sequence[CheckInRecord], before: datetime, *, days: int, min_checkins: int
) -> UsualCraving | None:
    """The usual craving over the ``days`` before ``before`` (not including it); None with fewer
    than ``min_checkins`` check-ins there."""
    window = _window(checkins, before, days)
    if len(window) < min_checkins:
        return None
    values = sorted(c.craving for c in window)
    median = statistics.median(values)
    spread = statistics.median(abs(v - median) for v in values)
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    return UsualCraving(
        median=median,
        spread=spread,
        low=round(quartiles[0]),
        high=round(quartiles[2]),
        checkins=len(window),
        since=before - timedelta(days=days),
    )


@dataclass(frozen=True)
class UsualRhythm:
    """How regularly the patient checks in: the longest gap between check-ins over a window."""

    longest_gap: timedelta
    checkins: int


def usual_rhythm(
    checkins: Sequence[CheckInRecord], until: datetime, *, days: int, min_checkins: int
) -> UsualRhythm | None:
    """The longest gap between consecutive check-ins of the ``days`` up to and including ``until``
    (the check-in a silence counts from); None with fewer than ``min_checkins`` check-ins there."""
    since = until - timedelta(days=days)
    window = [c.at for c in checkins if since <= c.at <= until]
    if len(window) < min_checkins:
        return None
    longest = max(later - earlier for earlier, later in zip(window, window[1:], strict=False))
    return UsualRhythm(longest, len(window))


__all__ = ["UsualCraving", "UsualRhythm", "usual_craving", "usual_rhythm"]

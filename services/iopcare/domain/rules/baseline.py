"""Personal baselines: what is usual for this patient, from their own recent record. Pure.

A fixed delta pages on ordinary noise: a rise from 1 to 4 of 10, one skipped daily check-in. The
soft signals are judged instead against the patient's own last ``days`` (14 by default): a robust
centre and spread of their craving and mood (median and median absolute deviation, which one odd day does
not move), and on how many days they checked in. Until there are ``min_checkins`` check-ins
in that window there is no baseline, and the rule pack's floors apply alone.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from iopcare.domain.engagement import CheckInRecord


@dataclass(frozen=True)
class UsualRange:
    """The patient's usual value of a rating (craving, mood) over a window: median, spread, and the
    middle half's range."""

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


def usual_range(
    checkins: Sequence[CheckInRecord],
    before: datetime,
    value: Callable[[CheckInRecord], int],
    *,
    days: int,
    min_checkins: int,
) -> UsualRange | None:
    """The usual ``value`` of the check-ins in the ``days`` before ``before`` (not including it);
    None with fewer than ``min_checkins`` check-ins there."""
    window = _window(checkins, before, days)
    if len(window) < min_checkins:
        return None
    values = sorted(value(c) for c in window)
    median = statistics.median(values)
    spread = statistics.median(abs(v - median) for v in values)
    quartiles = statistics.quantiles(values, n=4, method="inclusive")
    return UsualRange(
        median=median,
        spread=spread,
        low=round(quartiles[0]),
        high=round(quartiles[2]),
        checkins=len(window),
        since=before - timedelta(days=days),
    )


def sustained_against_usual(
    checkins: Sequence[CheckInRecord],
    k: int,
    value: Callable[[CheckInRecord], int],
    *,
    sustained: int,
    days: int,
    min_checkins: int,
    beyond: Callable[[UsualRange, int], bool],
    without_baseline: Callable[[int], bool],
) -> tuple[bool, UsualRange | None]:
    """Does the check-in at ``k`` end a run of ``sustained`` check-ins whose ``value`` is each
    ``beyond`` the patient's usual range over the ``days`` before the run? Without a baseline there,
    what ``without_baseline(k)`` says. Returns the answer and the range it was judged against."""
    if k < sustained - 1:
        return False, None
    run = checkins[k - sustained + 1 : k + 1]
    usual = usual_range(checkins, run[0].at, value, days=days, min_checkins=min_checkins)
    if usual is None:
        return without_baseline(k), None
    return all(beyond(usual, value(c)) for c in run), usual


@dataclass(frozen=True)
class UsualRhythm:
    """How regularly the patient checks in: on how many of the last ``days`` days."""

    checkin_days: int
    days: int

    @property
    def daily_rate(self) -> float:
        """The chance of a check-in on a given day, smoothed (one check-in day and one silent day
        added), so that a perfect record does not make a single skipped day look impossible."""
        return (self.checkin_days + 1) / (self.days + 2)

    def missed_days_unlikely_below(self, chance: float, longest: int = 30) -> int:
        """The fewest days in a row without a check-in that this rhythm makes less likely than
        ``chance``."""
        missing = 1 - self.daily_rate
        days = 1
        while days < longest and missing**days >= chance:
            days += 1
        return days


def usual_rhythm(
    checkins: Sequence[CheckInRecord],
    until: datetime,
    zone: tzinfo,
    *,
    days: int,
    min_checkins: int,
    first_day: date | None = None,
) -> UsualRhythm | None:
    """On how many of the ``days`` days up to and including the (local) day of ``until`` (the
    check-in a silence counts from) the patient checked in, counting no day before ``first_day``
    (their enrollment); None with fewer than ``min_checkins`` check-ins in those days."""
    last = until.astimezone(zone).date()
    first = last - timedelta(days=days - 1)
    if first_day is not None and first_day > first:
        first = first_day
    dates = {c.at.astimezone(zone).date() for c in checkins if c.at <= until}
    window = {d for d in dates if first <= d <= last}
    if len(window) < min_checkins:
        return None
    return UsualRhythm(len(window), (last - first).days + 1)


__all__ = [
    "UsualRange",
    "UsualRhythm",
    "sustained_against_usual",
    "usual_range",
    "usual_rhythm",
]

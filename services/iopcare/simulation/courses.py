"""Courses: how each archetype's program goes, day by day (per-day chances, ranges and special days)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from iopcare.simulation.program import PROGRAM_DAYS, Disposition, HouseKind

# --- courses: how each archetype's program goes, day by day -------------------------------------


@dataclass
class _Course:
    """Per-day probabilities and ranges plus the days of special events; the streams only read it."""

    attend: list[float]
    checkin: list[float]
    craving: list[tuple[int, int]]
    mood: list[tuple[int, int]]
    sleep: list[float]
    fellowship: list[float]
    family_show: list[float]
    house_incident: list[float]  # chance of a minor house incident in the week starting that day
    excused_share: float = 0.4
    family_cancel_share: float = 0.5
    family_first_day: int = 0  # 0: the timeline draws day 4-10
    intake_positive: bool = False
    forced_checkins: dict[int, int] = field(default_factory=dict)  # day -> craving
    silent: set[int] = field(default_factory=set)
    use_reported: set[int] = field(default_factory=set)
    exposure: set[int] = field(default_factory=set)  # days of use a screen can detect
    missed: set[int] = field(default_factory=set)  # days whose sessions are all missed, unexcused
    crisis_day: int | None = None
    house_incidents: list[tuple[int, HouseKind]] = field(default_factory=list)
    house_leave: tuple[int, Literal["left", "evicted"]] | None = None
    level_change_day: int | None = None
    discharge: tuple[int, Disposition] | None = None


def _base_course(
    n: int,
    *,
    attend: float,
    checkin: float,
    craving: tuple[int, int],
    mood: tuple[int, int],
    sleep: float,
    fellowship: float,
    family_show: float,
    house_incident: float,
) -> _Course:
    return _Course(
        attend=[attend] * n,
        checkin=[checkin] * n,
        craving=[craving] * n,
        mood=[mood] * n,
        sleep=[sleep] * n,
        fellowship=[fellowship] * n,
        family_show=[family_show] * n,
        house_incident=[house_incident] * n,
    )


def _fill(series: list[Any], first: int, last: int, value: Any) -> None:
    for day in range(max(first, 0), min(last, len(series))):
        series[day] = value


def _ramp(series: list[float], first: int, last: int, start: float, end: float) -> None:
    span = max(last - first, 1)
    for day in range(max(first, 0), min(last, len(series))):
        series[day] = start + (end - start) * (day - first) / span


def _completion(rng: random.Random, n: int, share: float) -> tuple[int, Disposition] | None:
    """Discharge as completed on the last planned day, for ``share`` of the patients who get there."""
    completes = rng.random() < share
    return (PROGRAM_DAYS - 1, "completed") if completes and n >= PROGRAM_DAYS else None


def _steady(rng: random.Random, n: int, group_days: list[int]) -> _Course:
    course = _base_course(
        n,
        attend=0.95,
        checkin=0.9,
        craving=(1, 4),
        mood=(5, 8),
        sleep=7.0,
        fellowship=0.9,
        family_show=0.92,
        house_incident=0.03,
    )
    course.excused_share = 0.5
    course.discharge = _completion(rng, n, 0.5)
    return course


def _improving(rng: random.Random, n: int, group_days: list[int]) -> _Course:
    # From day 28 (week 5) on, everything the plan asks is met; the first month is shaky.
    course = _base_course(
        n,
        attend=1.0,
        checkin=0.95,
        craving=(0, 3),
        mood=(6, 9),
        sleep=7.0,
        fellowship=1.0,
        family_show=0.95,
        house_incident=0.0,
    )
    _ramp(course.attend, 0, 28, 0.7, 0.9)
    _ramp(course.checkin, 0, 28, 0.7, 0.85)
    _fill(course.craving, 0, 14, (4, 7))
    _fill(course.craving, 14, 28, (3, 5))
    _fill(course.mood, 0, 28, (3, 6))
    _fill(course.sleep, 0, 28, 6.0)
    _ramp(course.fellowship, 0, 28, 0.5, 0.8)
    _fill(course.family_show, 0, 28, 0.75)
    _fill(course.house_incident, 0, 28, 0.08)
    course.excused_share = 0.3
    # A positive screen at intake is common and long past by the time step-down is judged.
    course.intake_positive = rng.random() < 0.3
    course.discharge = _completion(rng, n, 0.5)
    return course


def _disengaging(rng: random.Random, n: int, group_days: list[int]) -> _Course:
    course = _base_course(
        n,
        attend=0.9,
        checkin=0.85,
        craving=(2, 5),
        mood=(4, 7),
        sleep=6.5,
        fellowship=0.8,
        family_show=0.85,
        house_incident=0.05,
    )
    # From week 3 attendance, check-ins, meetings and family sessions decline to a low plateau.
    _ramp(course.attend, 14, 49, 0.9, 0.3)
    _fill(course.attend, 49, n, 0.3)
    _ramp(course.checkin, 14, 49, 0.8, 0.3)
    _fill(course.checkin, 49, n, 0.3)
    _fill(course.craving, 14, n, (3, 6))
    _fill(course.mood, 14, n, (3, 6))
    _ramp(course.fellowship, 14, 49, 0.8, 0.2)
    _fill(course.fellowship, 49, n, 0.2)
    _ramp(course.family_show, 14, 49, 0.85, 0.35)
    _fill(course.family_show, 49, n, 0.35)
    _fill(course.house_incident, 14, n, 0.3)
    course.excused_share = 0.1
    gap = rng.randint(15, 28)  # at least one silence of 3+ days, whatever the dice say later
    course.silent.update(range(gap, gap + rng.randint(3, 5)))
    course.intake_positive = rng.random() < 0.2
    if rng.random() < 0.3:
        course.family_first_day = rng.randint(22, 30)  # nothing booked by day 21
    if rng.random() < 0.4:
        course.house_leave = (rng.randint(35, 70), "left")
    leaves_on = rng.randint(42, 75)
    if rng.random() < 0.35 and leaves_on < n:
        _fill(course.attend, leaves_on - 7, leaves_on, 0.1)
        _fill(course.checkin, leaves_on - 7, leaves_on, 0.2)
        course.discharge = (leaves_on, "left_against_advice")
    return course


def _relapsing(rng: random.Random, n: int, group_days: list[int]) -> _Course:
    course = _base_course(
        n,
        attend=0.93,
        checkin=0.9,
        craving=(1, 4),
        mood=(5, 7),
        sleep=7.0,
        fellowship=0.85,
        family_show=0.9,
        house_incident=0.03,
    )
    onset = rng.randint(21, 35)
    # Craving climbs over four consecutive daily check-ins (+4 across the last three), then use.
    baseline = rng.randint(2, 3)
    for offset, bump in enumerate((0, 1, 3, 5)):
        course.forced_checkins[onset + offset] = min(10, baseline + bump)
    first_use = onset + 3
    lapse_end = onset + 21
    course.use_reported = {first_use, first_use + rng.randint(2, 3)}
    course.use_reported.update(d for d in range(first_use + 4, lapse_end) if rng.random() < 0.2)
    course.use_reported.update(d for d in range(lapse_end, n) if rng.random() < 0.04)
    course.exposure = course.use_reported | {first_use + 1}
    _fill(course.attend, onset + 3, lapse_end, 0.6)
    _fill(course.checkin, onset + 3, lapse_end, 0.75)
    _fill(course.craving, onset + 4, lapse_end, (5, 9))
    _fill(course.mood, onset, lapse_end, (2, 5))
    _fill(course.sleep, onset, lapse_end, 5.5)
    _fill(course.fellowship, onset + 3, lapse_end, 0.4)
    _fill(course.family_show, onset + 3, lapse_end, 0.6)
    _fill(course.attend, lapse_end, n, 0.8)
    _fill(course.craving, lapse_end, n, (3, 6))
    _fill(course.mood, lapse_end, n, (4, 6))
    _fill(course.fellowship, lapse_end, n, 0.7)
    # Two group sessions in a row are missed, and anything scheduled between them too.
    next_groups = [d for d in group_days if d > first_use][:2]
    if next_groups:
        course.missed.update(range(next_groups[0], next_groups[-1] + 1))
    course.house_incidents.append((first_use + 1, "positive_test"))
    if rng.random() < 0.25:
        course.house_leave = (first_use + rng.randint(5, 9), "evicted")
    course.excused_share = 0.2
    step_up_on = min(onset + rng.randint(14, 21), n - 2)
    if rng.random() < 0.5 and step_up_on > first_use:
        course.level_change_day = step_up_on
    return course


def _crisis(rng: random.Random, n: int, group_days: list[int]) -> _Course:
    course = _base_course(
        n,
        attend=0.9,
        checkin=0.88,
        craving=(2, 5),
        mood=(4, 7),
        sleep=6.5,
        fellowship=0.8,
        family_show=0.85,
        house_incident=0.05,
    )
    day = rng.randint(14, max(14, min(n, PROGRAM_DAYS) - 10))
    _fill(course.mood, day - 5, day, (1, 3))
    _fill(course.sleep, day - 5, day + 1, 4.5)
    _fill(course.mood, day + 1, day + 15, (3, 6))
    course.crisis_day = day
    course.discharge = _completion(rng, n, 0.5)
    return course


_COURSES: Final = {
    "steady": _steady,
    "improving": _improving,
    "disengaging": _disengaging,
    "relapsing": _relapsing,
    "crisis": _crisis,
}

"""Courses: how each archetype's program goes, day by day: the latent risk's trajectory, the usual
engagement and the special days; the latent process (latent.py) draws the rest."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from iopcare.simulation.latent import REPORTED_SHARE, LatentCourse, draw_latent, engagement
from iopcare.simulation.program import PROGRAM_DAYS, Disposition, HouseKind

# --- courses: how each archetype's program goes, day by day -------------------------------------


@dataclass
class _Course:
    """An archetype's course: the latent risk's trajectory, the usual engagement (per-day chances
    before the latent risk scales them), the patient's own centres, and the days of special events.
    ``draw`` adds what the latent process decides (latent.py); the timeline only reads the result."""

    risk_mean: list[float]
    attend: list[float]
    checkin: list[float]
    fellowship: list[float]
    family_show: list[float]
    house_incident: list[float]  # chance of a minor house incident in the week starting that day
    craving_centre: float = 1.0  # the patient's usual craving at no risk (the scale adds 7 z)
    mood_centre: float = 7.5  # usual mood at no risk (the scale takes 6 z off)
    sleep_centre: float = 7.4  # usual hours of sleep at no risk (3 z fewer)
    excused_share: float = 0.4
    family_cancel_share: float = 0.5
    family_first_day: int = 0  # 0: the timeline draws day 4-10
    intake_positive: bool = False
    silent: set[int] = field(default_factory=set)
    crisis_day: int | None = None
    distress: set[int] = field(default_factory=set)  # days of low mood and short sleep (before a crisis)
    house_incidents: list[tuple[int, HouseKind]] = field(default_factory=list)
    house_leave: tuple[int, Literal["left", "evicted"]] | None = None
    level_change_day: int | None = None
    discharge: tuple[int, Disposition] | None = None
    latent: LatentCourse = field(default_factory=lambda: LatentCourse(risk=[]))
    reported: set[int] = field(default_factory=set)  # use days the check-in reports (if one is made)
    missed: set[int] = field(default_factory=set)  # days whose sessions are all missed, unexcused

    def risk(self, day: int) -> float:
        return self.latent.risk[day]

    def chance(self, usual: list[float], day: int) -> float:
        """The archetype's usual chance of something that day, scaled by the latent risk (and
        halved on a day of a lapse)."""
        scaled = usual[day] * engagement(self.risk(day))
        return scaled * 0.5 if self.latent.lapsing(day) else scaled

    def draw(self, rng: random.Random, n: int, in_house: bool, adolescent: bool) -> None:
        """Draw the latent course and what follows from it: use, its reports, detection by the
        house, a step-up, a dropout and the discharge it leads to."""
        self.craving_centre = rng.uniform(0.5, 2.0)
        self.mood_centre = rng.uniform(7.0, 8.5)
        self.sleep_centre = rng.uniform(6.8, 8.0)
        if adolescent:  # adolescents check in less regularly (documented in docs/cohort.md)
            self.checkin = [c * 0.85 for c in self.checkin]
        self.latent = latent = draw_latent(rng, self.risk_mean)
        self.reported = {d for d in sorted(latent.use_days) if rng.random() < REPORTED_SHARE}
        for lapse in latent.lapses:
            if in_house and rng.random() < 0.4:  # the house's own tests catch some lapses
                self.house_incidents.append((lapse.start + 1, "positive_test"))
                if self.house_leave is None and rng.random() < 0.25:
                    self.house_leave = (lapse.start + rng.randint(5, 9), "evicted")
        long_lapses = [lapse for lapse in latent.lapses if len(lapse.use_days) >= 3]
        if long_lapses and rng.random() < 0.5:  # the team steps a sustained lapse up to 2.5
            self.level_change_day = min(long_lapses[0].start + rng.randint(10, 18), n - 2)
        if latent.dropout is not None:
            gone = latent.dropout
            self.missed.update(range(gone, n))
            for usual in (self.attend, self.checkin, self.fellowship, self.family_show):
                _fill(usual, gone, n, 0.0)
            if self.level_change_day is not None and self.level_change_day >= gone:
                self.level_change_day = None
            # The clinic discharges the patient who stopped coming after one to two weeks.
            leaves_on = gone + rng.randint(7, 14)
            self.discharge = (leaves_on, "left_against_advice") if leaves_on < n else None
            self.crisis_day = (
                None if self.crisis_day is not None and self.crisis_day >= gone else self.crisis_day
            )


def _base_course(
    n: int,
    *,
    risk: float,
    attend: float,
    checkin: float,
    fellowship: float,
    family_show: float,
    house_incident: float,
) -> _Course:
    return _Course(
        risk_mean=[risk] * n,
        attend=[attend] * n,
        checkin=[checkin] * n,
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


def _steady(rng: random.Random, n: int) -> _Course:
    course = _base_course(
        n, risk=0.12, attend=0.95, checkin=0.9, fellowship=0.9, family_show=0.92, house_incident=0.03
    )
    course.excused_share = 0.5
    course.discharge = _completion(rng, n, 0.5)
    return course


def _improving(rng: random.Random, n: int) -> _Course:
    # A shaky first month (risk falling from 0.45 to 0.12), then the plan is met week after week.
    course = _base_course(
        n, risk=0.1, attend=1.0, checkin=0.95, fellowship=1.0, family_show=0.95, house_incident=0.0
    )
    _ramp(course.risk_mean, 0, 28, 0.45, 0.12)
    _ramp(course.attend, 0, 28, 0.75, 0.95)
    _ramp(course.checkin, 0, 28, 0.75, 0.9)
    _ramp(course.fellowship, 0, 28, 0.5, 0.85)
    _fill(course.family_show, 0, 28, 0.75)
    _fill(course.house_incident, 0, 28, 0.08)
    course.excused_share = 0.3
    # A positive screen at intake is common and long past by the time step-down is judged.
    course.intake_positive = rng.random() < 0.3
    course.discharge = _completion(rng, n, 0.5)
    return course


def _disengaging(rng: random.Random, n: int) -> _Course:
    course = _base_course(
        n, risk=0.2, attend=0.92, checkin=0.88, fellowship=0.8, family_show=0.85, house_incident=0.05
    )
    # From week 3 risk climbs to a plateau, and attendance, check-ins, meetings and family sessions fade.
    _ramp(course.risk_mean, 14, 49, 0.2, 0.55)
    _fill(course.risk_mean, 49, n, 0.55)
    _ramp(course.attend, 14, 49, 0.92, 0.55)
    _fill(course.attend, 49, n, 0.55)
    _ramp(course.checkin, 14, 49, 0.85, 0.5)
    _fill(course.checkin, 49, n, 0.5)
    _ramp(course.fellowship, 14, 49, 0.8, 0.35)
    _fill(course.fellowship, 49, n, 0.35)
    _ramp(course.family_show, 14, 49, 0.85, 0.45)
    _fill(course.family_show, 49, n, 0.45)
    _fill(course.house_incident, 14, n, 0.3)
    course.excused_share = 0.1
    gap = rng.randint(15, 28)  # at least one silence of 3+ days, whatever the dice say later
    course.silent.update(range(gap, gap + rng.randint(3, 5)))
    course.intake_positive = rng.random() < 0.2
    if rng.random() < 0.3:
        course.family_first_day = rng.randint(22, 30)  # nothing booked by day 21
    if rng.random() < 0.4:
        course.house_leave = (rng.randint(35, 70), "left")
    return course


def _relapsing(rng: random.Random, n: int) -> _Course:
    course = _base_course(
        n, risk=0.15, attend=0.93, checkin=0.9, fellowship=0.85, family_show=0.9, house_incident=0.03
    )
    # Fine for 3-5 weeks, then the risk climbs over about ten days to a peak at which a lapse is
    # likely within days; it comes down slowly over the next weeks.
    onset = rng.randint(21, 35)
    _ramp(course.risk_mean, onset - 10, onset, 0.15, 0.7)
    _fill(course.risk_mean, onset, onset + 14, 0.7)
    _ramp(course.risk_mean, onset + 14, onset + 35, 0.7, 0.35)
    _fill(course.risk_mean, onset + 35, n, 0.35)
    course.excused_share = 0.2
    return course


def _crisis(rng: random.Random, n: int) -> _Course:
    course = _base_course(
        n, risk=0.25, attend=0.9, checkin=0.88, fellowship=0.8, family_show=0.85, house_incident=0.05
    )
    day = rng.randint(14, max(14, min(n, PROGRAM_DAYS) - 10))
    course.crisis_day = day
    course.distress.update(range(day - 5, day + 1))
    course.discharge = _completion(rng, n, 0.5)
    return course


_COURSES: Final = {
    "steady": _steady,
    "improving": _improving,
    "disengaging": _disengaging,
    "relapsing": _relapsing,
    "crisis": _crisis,
}

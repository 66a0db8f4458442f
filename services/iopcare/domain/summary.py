"""A patient's case summary: what the counselor's API shows about a patient, judged at a time. Pure.

The processor writes it (table ``patient_summary``) in the transaction that changes the patient's
course, so the API reads a few columns instead of parsing the processor's state document: the state
document's format is the processor's own business (``domain/state_document.py``). The summary is as
of the time it was judged (``as_of``): the latest event's time on the stream clock, the processing time
on the wall clock, and the due time of whatever the sweep fired since (a week close, a silence
check), so it moves on with the program calendar even when the patient sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from iopcare.domain.engagement import PatientState
from iopcare.domain.measures import consecutive_unexcused_misses, week_attendance
from iopcare.domain.risk import risk_trend
from iopcare.domain.rules.pack import RulePack


@dataclass(frozen=True, slots=True)
class WeekSummary:
    """The current program week's attendance against the weekly plan."""

    week: int
    group_sessions: int
    group_sessions_planned: int
    individual_sessions: int
    individual_sessions_planned: int
    hours: float
    hours_planned: float
    missed_unexcused: int
    missed_excused: int


@dataclass(frozen=True, slots=True)
class RiskFactorSummary:
    name: str
    points: int
    reason: str


@dataclass(frozen=True, slots=True)
class RiskSummary:
    """The 0-100 relapse-risk score, its factors and its change over the trend window."""

    score: int
    as_of: datetime
    factors: tuple[RiskFactorSummary, ...]
    explanation: str
    trend_change: int
    trend_direction: Literal["rising", "falling", "steady"]
    trend_days: int


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """A patient's engagement at a glance, as of ``as_of`` (None: nothing known yet)."""

    patient_id: str
    as_of: datetime | None
    level_of_care: str | None
    program_start: date | None
    discharged: bool
    last_event_at: datetime | None
    last_checkin_at: datetime | None
    last_craving: int | None
    consecutive_unexcused_misses: int
    this_week: WeekSummary | None
    risk: RiskSummary | None


def summarize(state: PatientState, as_of: datetime | None, pack: RulePack) -> CaseSummary:
    """The case summary of ``state`` judged at ``as_of``."""
    enrollment = state.enrollment
    week: WeekSummary | None = None
    if enrollment is not None and as_of is not None:
        calendar = pack.program_calendar
        number = calendar.week_number(enrollment.program_start, as_of)
        if number >= 1:
            done = week_attendance(state, number, calendar)
            start, _ = calendar.week_bounds(enrollment.program_start, number)
            plan = state.weekly_plan_from(calendar.local_date(start)) or enrollment.weekly_plan
            week = WeekSummary(
                week=number,
                group_sessions=done.group_sessions,
                group_sessions_planned=plan.group_sessions,
                individual_sessions=done.individual_sessions,
                individual_sessions_planned=plan.individual_sessions,
                hours=done.hours,
                hours_planned=plan.hours,
                missed_unexcused=done.missed_unexcused,
                missed_excused=done.missed_excused,
            )
    return CaseSummary(
        patient_id=state.patient_id,
        as_of=as_of,
        level_of_care=state.level_of_care,
        program_start=enrollment.program_start if enrollment else None,
        discharged=state.discharge is not None,
        last_event_at=state.high_water,
        last_checkin_at=state.last_checkin_at,
        last_craving=state.checkins[-1].craving if state.checkins else None,
        consecutive_unexcused_misses=len(consecutive_unexcused_misses(state, as_of)),
        this_week=week,
        risk=None if as_of is None else _risk(state, as_of, pack),
    )


def _risk(state: PatientState, as_of: datetime, pack: RulePack) -> RiskSummary:
    trend = risk_trend(state, as_of, pack)
    return RiskSummary(
        score=trend.now.score,
        as_of=as_of,
        factors=tuple(RiskFactorSummary(f.name, f.points, f.reason) for f in trend.now.factors),
        explanation=trend.now.explanation(),
        trend_change=trend.change,
        trend_direction=trend.direction,
        trend_days=pack.risk.trend_days,
    )


__all__ = ["CaseSummary", "RiskFactorSummary", "RiskSummary", "WeekSummary", "summarize"]

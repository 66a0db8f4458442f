"""Absence is an event too: the checks that fire when *nothing* arrives. Pure.

"No check-in for 48 hours" and "the week closed below plan" cannot be triggered by an event, because
their evidence is an event that never came. Instead every state change lists the checks that are
due at some future time (:func:`due_checks`); the processor keeps them in Postgres and a sweep takes
each one when its time comes and asks :func:`observe` whether the absence is real. A check is keyed
by the episode it belongs to (the last check-in it counts from, the program week it closes), so
rescheduling is idempotent and each check fires once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from iopcare.domain.engagement import PatientState
from iopcare.domain.measures import ProgramCalendar, week_attendance

CheckKind = Literal["checkin_silence", "week_close"]
SignalKind = Literal["checkin_silence", "weekly_plan_shortfall"]
Fact = str | int | float


@dataclass(frozen=True)
class AbsencePolicy:
    """When absence checks fall due (the rule pack's numbers; CLINICAL.md has the defaults)."""

    silence_after: tuple[timedelta, ...] = (timedelta(hours=48), timedelta(hours=72))
    # Attendance for a week's last sessions may be recorded the next morning.
    week_close_grace: timedelta = timedelta(hours=12)
    calendar: ProgramCalendar = field(default_factory=ProgramCalendar)


DEFAULT_ABSENCE_POLICY = AbsencePolicy()


@dataclass(frozen=True, order=True)
class AbsenceCheck:
    """A check due at ``due_at``; ``key`` names its episode and is unique per patient."""

    due_at: datetime
    key: str
    kind: CheckKind


@dataclass(frozen=True)
class AbsenceSignal:
    """An absence the sweep found real: what was expected, and what the state shows."""

    kind: SignalKind
    check_key: str
    due_at: datetime
    facts: dict[str, Fact] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()  # event ids behind the facts


def due_checks(state: PatientState, policy: AbsencePolicy = DEFAULT_ABSENCE_POLICY) -> set[AbsenceCheck]:
    """Every check this state expects to be swept: none before enrollment or after discharge."""
    enrollment = state.enrollment
    if enrollment is None or state.discharge is not None:
        return set()
    checks: set[AbsenceCheck] = set()
    anchor_at, anchor_id = _silence_anchor(state)
    for after in policy.silence_after:
        checks.add(AbsenceCheck(anchor_at + after, _silence_key(after, anchor_id), "checkin_silence"))
    weeks = -(-enrollment.planned_length_days // 7)
    for week in range(1, weeks + 1):
        _, week_end = policy.calendar.week_bounds(enrollment.program_start, week)
        key = f"week_close:{enrollment.program_start.isoformat()}:{week}"
        checks.add(AbsenceCheck(week_end + policy.week_close_grace, key, "week_close"))
    return checks


def observe(
    state: PatientState, check: AbsenceCheck, policy: AbsencePolicy = DEFAULT_ABSENCE_POLICY
) -> AbsenceSignal | None:
    """At (or after) ``check.due_at``: the signal if the absence is real, None if the state moved on
    (a check-in came, the patient was discharged or re-enrolled)."""
    if check not in due_checks(state, policy):
        return None
    if check.kind == "checkin_silence":
        anchor_at, anchor_id = _silence_anchor(state)
        hours = round((check.due_at - anchor_at).total_seconds() / 3600)
        checked_in = state.last_checkin_at is not None
        return AbsenceSignal(
            "checkin_silence",
            check.key,
            check.due_at,
            facts={
                "hours_without_checkin": hours,
                "since": anchor_at.isoformat(),
                "since_what": "last check-in" if checked_in else "enrollment",
            },
            evidence=(anchor_id,),
        )
    return _week_shortfall(state, check, policy)


def _week_shortfall(state: PatientState, check: AbsenceCheck, policy: AbsencePolicy) -> AbsenceSignal | None:
    assert state.enrollment is not None  # due_checks lists week closes only for an enrollment
    week = int(check.key.rsplit(":", 1)[1])
    done = week_attendance(state, week, policy.calendar)
    plan = state.enrollment.weekly_plan
    short = {
        name: (actual, planned)
        for name, actual, planned in (
            ("group_sessions", done.group_sessions, plan.group_sessions),
            ("individual_sessions", done.individual_sessions, plan.individual_sessions),
            ("hours", round(done.hours, 2), plan.hours),
            ("fellowship_meetings", done.fellowship_meetings, plan.fellowship_meetings),
        )
        if actual < planned
    }
    if not short:
        return None
    start, end = policy.calendar.week_bounds(state.enrollment.program_start, week)
    facts: dict[str, Fact] = {"week": week}
    for name, (actual, planned) in short.items():
        facts[name] = actual
        facts[f"{name}_planned"] = planned
    evidence = tuple(
        s.event_id
        for s in sorted(state.sessions.values(), key=lambda s: (s.starts_at, s.session_id))
        if start <= s.starts_at < end
    )
    return AbsenceSignal("weekly_plan_shortfall", check.key, check.due_at, facts=facts, evidence=evidence)


def _silence_anchor(state: PatientState) -> tuple[datetime, str]:
    """Silence counts from the last check-in, or from enrollment before the first one."""
    if state.checkins:
        return state.checkins[-1].at, state.checkins[-1].event_id
    assert state.enrollment is not None
    return state.enrollment.enrolled_at, state.enrollment.event_id


def _silence_key(after: timedelta, anchor_event_id: str) -> str:
    return f"checkin_silence:{int(after.total_seconds() // 3600)}h:{anchor_event_id}"


__all__ = [
    "DEFAULT_ABSENCE_POLICY",
    "AbsenceCheck",
    "AbsencePolicy",
    "AbsenceSignal",
    "due_checks",
    "observe",
]

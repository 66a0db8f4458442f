"""Absence is an event too: the checks that fire when *nothing* arrives. Pure.

"No check-in for 48 hours" and "the week closed below plan" cannot be triggered by an event, because
their evidence is an event that never came. Instead every state change lists the checks that are
due at some future time (:func:`due_checks`); the processor keeps them in Postgres and a sweep takes
each one when its time comes and asks :func:`observe` what the rules find. A check is keyed by the
episode it belongs to (the last check-in it counts from, the program week it closes, the program
whose day 21 it is), so rescheduling is idempotent and each check fires once.

The time rules of the rule pack run through these checks:

- ``checkin_silence:<hours>h:<anchor event id>``: silence (48 h medium, then 72 h high; one alert);
- ``week_close:<program start>:<week>``: weekly plan shortfall, fellowship shortfall, step up (low
  attendance with use), step down, and the end of an episode of frequent misses;
- ``family_therapy_due:<program start>``: family therapy not booked by day 21.

Transitional: the store still passes an :class:`AbsencePolicy` and reads an :class:`AbsenceSignal`;
that older path is kept unchanged at the end of this module until the store passes a ``RulePack``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Literal, overload

from iopcare.contract import CheckInSubmitted, PatientDischarged, PatientEnrolled
from iopcare.domain.engagement import PatientState
from iopcare.domain.measures import ProgramCalendar, week_attendance
from iopcare.domain.rules import DEFAULT_PACK, RulePack
from iopcare.domain.rules.events import week_closed
from iopcare.domain.rules.household import family_not_booked
from iopcare.domain.rules.silence import silence, silence_anchor
from iopcare.domain.signals import Finding

CheckKind = Literal["checkin_silence", "week_close", "family_therapy_due"]
SignalKind = Literal["checkin_silence", "weekly_plan_shortfall"]
Fact = str | int | float

CHECKS_CHANGE_AFTER: tuple[type, ...] = (PatientEnrolled, CheckInSubmitted, PatientDischarged)
"""The event types after which :func:`due_checks` can give a different set (with a ``RulePack``):
a caller that folds many events (a backtest) need not recompute the checks after any other."""


@dataclass(frozen=True, order=True)
class AbsenceCheck:
    """A check due at ``due_at``; ``key`` names its episode and is unique per patient."""

    due_at: datetime
    key: str
    kind: CheckKind


def _week_rules_enabled(pack: RulePack) -> bool:
    rules = pack.rules
    return any(
        rule.enabled
        for rule in (
            rules.weekly_plan_shortfall,
            rules.fellowship_shortfall,
            rules.missed_often,
            rules.step_up,
            rules.step_down,
        )
    )


@lru_cache(maxsize=1024)
def _program_checks(
    program_start: date,
    planned_days: int,
    calendar: ProgramCalendar,
    grace: timedelta,
    family_due: timedelta | None,
) -> frozenset[AbsenceCheck]:
    """The checks a program has whatever the patient does: its week closes and its day-21 check.
    Cached: they depend only on the program and the pack, and every check-in asks for them again."""
    start = program_start.isoformat()
    checks = set()
    for week in range(1, -(-planned_days // 7) + 1):
        _, week_end = calendar.week_bounds(program_start, week)
        checks.add(AbsenceCheck(week_end + grace, f"week_close:{start}:{week}", "week_close"))
    if family_due is not None:
        first_day, _ = calendar.week_bounds(program_start, 1)
        checks.add(AbsenceCheck(first_day + family_due, f"family_therapy_due:{start}", "family_therapy_due"))
    return frozenset(checks)


def _checks_of_program(state: PatientState, pack: RulePack) -> frozenset[AbsenceCheck]:
    enrollment = state.enrollment
    assert enrollment is not None
    family = pack.rules.family_not_booked
    return _program_checks(
        enrollment.program_start,
        enrollment.planned_length_days if _week_rules_enabled(pack) else 0,
        pack.program_calendar,
        pack.week_close_grace,
        timedelta(days=family.by_day) if family.enabled else None,
    )


def _silence_checks(state: PatientState, pack: RulePack) -> list[AbsenceCheck]:
    anchor = silence_anchor(state)
    if not pack.rules.silence.enabled or anchor is None:
        return []
    anchor_at, anchor_id, _ = anchor
    return [
        AbsenceCheck(
            anchor_at + timedelta(hours=step.hours), _silence_key(step.hours, anchor_id), "checkin_silence"
        )
        for step in pack.rules.silence.after
    ]


def due_checks(state: PatientState, rules: RulePack | AbsencePolicy = DEFAULT_PACK) -> set[AbsenceCheck]:
    """Every check this state expects to be swept: none before enrollment or after discharge."""
    if isinstance(rules, AbsencePolicy):
        return _policy_due_checks(state, rules)
    if state.enrollment is None or state.discharge is not None:
        return set()
    checks = set(_checks_of_program(state, rules))
    checks.update(_silence_checks(state, rules))
    return checks


def _expects(state: PatientState, check: AbsenceCheck, pack: RulePack) -> bool:
    """``check in due_checks(state, pack)``, without building the whole set."""
    if state.enrollment is None or state.discharge is not None:
        return False
    if check.kind == "checkin_silence":
        return check in _silence_checks(state, pack)
    return check in _checks_of_program(state, pack)


@overload
def observe(state: PatientState, check: AbsenceCheck, rules: AbsencePolicy) -> AbsenceSignal | None: ...


@overload
def observe(state: PatientState, check: AbsenceCheck, rules: RulePack = ...) -> list[Finding]: ...


def observe(
    state: PatientState, check: AbsenceCheck, rules: RulePack | AbsencePolicy = DEFAULT_PACK
) -> list[Finding] | AbsenceSignal | None:
    """At (or after) ``check.due_at``: what the time rules find, or nothing if the state moved on (a
    check-in came, the patient was discharged or re-enrolled). Deterministic, like the event rules."""
    if isinstance(rules, AbsencePolicy):
        return _policy_observe(state, check, rules)
    pack = rules
    if not _expects(state, check, pack):
        return []
    if check.kind == "checkin_silence":
        hours = int(check.key.split(":", 2)[1].removesuffix("h"))
        step = next(s for s in pack.rules.silence.after if s.hours == hours)
        return silence(state, step, check.due_at, pack)
    if check.kind == "week_close":
        return week_closed(state, int(check.key.rsplit(":", 1)[1]), check.due_at, pack)
    return family_not_booked(state, check.due_at, pack)


def _silence_key(hours: int, anchor_event_id: str) -> str:
    return f"checkin_silence:{hours}h:{anchor_event_id}"


# --- transitional: the AbsencePolicy / AbsenceSignal path the store still uses -------------------


@dataclass(frozen=True)
class AbsencePolicy:
    """When absence checks fall due (the rule pack's numbers; CLINICAL.md has the defaults)."""

    silence_after: tuple[timedelta, ...] = (timedelta(hours=48), timedelta(hours=72))
    # Attendance for a week's last sessions may be recorded the next morning.
    week_close_grace: timedelta = timedelta(hours=12)
    calendar: ProgramCalendar = field(default_factory=ProgramCalendar)


DEFAULT_ABSENCE_POLICY = AbsencePolicy()


@dataclass(frozen=True)
class AbsenceSignal:
    """An absence the sweep found real: what was expected, and what the state shows."""

    kind: SignalKind
    check_key: str
    due_at: datetime
    facts: dict[str, Fact] = field(default_factory=dict)
    evidence: tuple[str, ...] = ()  # event ids behind the facts


def _policy_due_checks(state: PatientState, policy: AbsencePolicy) -> set[AbsenceCheck]:
    enrollment = state.enrollment
    if enrollment is None or state.discharge is not None:
        return set()
    checks: set[AbsenceCheck] = set()
    anchor_at, anchor_id = _silence_anchor(state)
    for after in policy.silence_after:
        checks.add(
            AbsenceCheck(
                anchor_at + after, _silence_key(after // timedelta(hours=1), anchor_id), "checkin_silence"
            )
        )
    weeks = -(-enrollment.planned_length_days // 7)
    for week in range(1, weeks + 1):
        _, week_end = policy.calendar.week_bounds(enrollment.program_start, week)
        key = f"week_close:{enrollment.program_start.isoformat()}:{week}"
        checks.add(AbsenceCheck(week_end + policy.week_close_grace, key, "week_close"))
    return checks


def _policy_observe(state: PatientState, check: AbsenceCheck, policy: AbsencePolicy) -> AbsenceSignal | None:
    if check not in _policy_due_checks(state, policy):
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


__all__ = [
    "CHECKS_CHANGE_AFTER",
    "DEFAULT_ABSENCE_POLICY",
    "AbsenceCheck",
    "AbsencePolicy",
    "AbsenceSignal",
    "CheckKind",
    "due_checks",
    "observe",
]

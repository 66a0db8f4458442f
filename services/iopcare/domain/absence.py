"""Absence is an event too: the checks that fire when *nothing* arrives. Pure.

"No check-in for 48 hours" and "the week closed below plan" cannot be triggered by an event, because
their evidence is an event that never came. Instead every state change lists the checks that are
due at some future time (:func:`due_checks`); the processor keeps them in Postgres and a sweep takes
each one when its time comes and asks :func:`observe` what the rules find. A check is keyed by the
episode it belongs to (the last check-in it counts from, the program week it closes, the program
whose day 21 it is), so rescheduling is idempotent and each check fires once.

The time rules of the rule pack run through these checks:

- ``checkin_silence:<hours>h:<anchor event id>``: silence (48 h medium, then 72 h high, both later
  for a patient whose own rhythm has longer gaps; one alert);
- ``week_close:<program start>:<week>``: weekly plan shortfall, fellowship shortfall, step up (low
  attendance with use), step down, and the end of an episode of frequent misses;
- ``family_therapy_due:<program start>``: family therapy not booked by day 21.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Literal

from iopcare.contract import CheckInSubmitted, PatientDischarged, PatientEnrolled
from iopcare.domain.engagement import PatientState
from iopcare.domain.measures import ProgramCalendar
from iopcare.domain.rules import RulePack
from iopcare.domain.rules.events import week_closed
from iopcare.domain.rules.household import family_not_booked
from iopcare.domain.rules.silence import rhythm_before, silence, silence_anchor, silence_delay
from iopcare.domain.signals import Finding

CheckKind = Literal["checkin_silence", "week_close", "family_therapy_due"]

CHECKS_CHANGE_AFTER: tuple[type, ...] = (PatientEnrolled, CheckInSubmitted, PatientDischarged)
"""The event types after which :func:`due_checks` can give a different set (with a ``RulePack``):
a caller that folds many events (a backtest) need not recompute the checks after any other."""
PROGRAM_CHECKS_CHANGE_AFTER: tuple[type, ...] = (PatientEnrolled, PatientDischarged)
"""Of those, the ones after which :func:`program_checks` can change (a check-in moves only the
silence checks)."""


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


def program_checks(state: PatientState, pack: RulePack) -> frozenset[AbsenceCheck]:
    """The checks of the patient's program (week closes, day 21): they change only with the
    enrollment, and the same enrollment gives the same (cached) set."""
    enrollment = state.enrollment
    if enrollment is None or state.discharge is not None:
        return frozenset()
    family = pack.rules.family_not_booked
    return _program_checks(
        enrollment.program_start,
        enrollment.planned_length_days if _week_rules_enabled(pack) else 0,
        pack.program_calendar,
        pack.week_close_grace,
        timedelta(days=family.by_day) if family.enabled else None,
    )


def silence_checks(state: PatientState, pack: RulePack) -> tuple[AbsenceCheck, ...]:
    """The silence checks counting from the last check-in (or the enrollment): they move with
    every check-in."""
    if state.enrollment is None or state.discharge is not None or not pack.rules.silence.enabled:
        return ()
    anchor = silence_anchor(state)
    if anchor is None:
        return ()
    anchor_at, anchor_id, checked_in = anchor
    delay = silence_delay(rhythm_before(state, anchor_at, pack), pack) if checked_in else timedelta(0)
    return tuple(
        AbsenceCheck(anchor_at + step.after + delay, _silence_key(step.hours, anchor_id), "checkin_silence")
        for step in pack.rules.silence.after
    )


def due_checks(state: PatientState, pack: RulePack) -> set[AbsenceCheck]:
    """Every check this state expects to be swept: none before enrollment or after discharge."""
    checks = set(program_checks(state, pack))
    checks.update(silence_checks(state, pack))
    return checks


def _expects(state: PatientState, check: AbsenceCheck, pack: RulePack) -> bool:
    """``check in due_checks(state, pack)``, without building the whole set."""
    if state.enrollment is None or state.discharge is not None:
        return False
    if check.kind == "checkin_silence":
        return check in silence_checks(state, pack)
    return check in program_checks(state, pack)


def observe(state: PatientState, check: AbsenceCheck, pack: RulePack) -> list[Finding]:
    """At (or after) ``check.due_at``: what the time rules find, or nothing if the state moved on (a
    check-in came, the patient was discharged or re-enrolled). Deterministic, like the event rules."""
    if not _expects(state, check, pack):
        return []
    return findings_at(state, check, pack)


def findings_at(state: PatientState, check: AbsenceCheck, pack: RulePack) -> list[Finding]:
    """:func:`observe` for a check the caller already knows the state expects (a backtest keeps
    each patient's due checks as they change, so asking again would only repeat the work)."""
    if check.kind == "checkin_silence":
        hours = int(check.key.split(":", 2)[1].removesuffix("h"))
        step = next(s for s in pack.rules.silence.after if s.hours == hours)
        return silence(state, step, check.due_at, pack)
    if check.kind == "week_close":
        return week_closed(state, int(check.key.rsplit(":", 1)[1]), check.due_at, pack)
    return family_not_booked(state, check.due_at, pack)


def _silence_key(hours: int, anchor_event_id: str) -> str:
    return f"checkin_silence:{hours}h:{anchor_event_id}"

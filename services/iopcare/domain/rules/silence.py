"""Silence: no check-in for 48 hours (medium), then 72 hours (high), and for longer than the
patient's own rhythm makes likely (a patient who checks in on 13 of 14 days rarely misses 2 in a
row: both steps move out until the silence covers that many days).

One silence is one episode, named after the check-in it counts from (or the enrollment, before the
first check-in): the 72-hour signal raises the severity of the 48-hour alert instead of adding a
second one. The next check-in ends the silence and clears it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from iopcare.contract import CheckInSubmitted
from iopcare.domain.engagement import PatientState
from iopcare.domain.rules.baseline import UsualRhythm, usual_rhythm
from iopcare.domain.rules.evidence import checkin_index, clearance, signal
from iopcare.domain.rules.pack import RulePack, SilenceStep
from iopcare.domain.rules.wording import count, day_time
from iopcare.domain.signals import Finding

ACTION = (
    "Reach out to the patient today (call or message) and ask for a check-in; if they cannot be reached, "
    "follow the program's outreach protocol."
)


def silence_anchor(state: PatientState) -> tuple[datetime, str, bool] | None:
    """(time, event id, is a check-in) of what silence counts from: the last check-in, else the
    enrollment; None before enrollment."""
    if state.checkins:
        last = state.checkins[-1]
        return last.at, last.event_id, True
    if state.enrollment is not None:
        return state.enrollment.enrolled_at, state.enrollment.event_id, False
    return None


def rhythm_before(state: PatientState, anchor_at: datetime, pack: RulePack) -> UsualRhythm | None:
    """The patient's check-in rhythm up to the check-in a silence counts from (None: too few
    check-ins for one, and the floors apply alone)."""
    rule = pack.rules.silence
    zone = pack.program_calendar.zone
    enrolled = state.enrollment.enrolled_at.astimezone(zone).date() if state.enrollment else None
    return usual_rhythm(
        state.checkins,
        anchor_at,
        zone,
        days=rule.baseline_days,
        min_checkins=rule.baseline_min_checkins,
        first_day=enrolled,
    )


def unusual_after(rhythm: UsualRhythm, pack: RulePack) -> int:
    """Days in a row without a check-in that the patient's rhythm makes unlikely."""
    return rhythm.missed_days_unlikely_below(pack.rules.silence.unlikely_below)


def silence_delay(rhythm: UsualRhythm | None, pack: RulePack) -> timedelta:
    """How much later than the floors every step falls due for a patient with this rhythm: the
    first step waits until the silence covers the days in a row their rhythm makes unlikely (a
    check-in is due a day after the last, so ``n`` missed days are over ``n + 1`` days after it)."""
    if rhythm is None:
        return timedelta(0)
    first = pack.rules.silence.after[0].after
    return max(timedelta(0), timedelta(days=unusual_after(rhythm, pack) + 1) - first)


def silence(state: PatientState, step: SilenceStep, due_at: datetime, pack: RulePack) -> list[Finding]:
    """No check-in for ``step.hours`` hours, and for longer than the patient's rhythm allows (called
    by the absence sweep when that time has come)."""
    anchor = silence_anchor(state)
    if anchor is None:
        return []
    since, anchor_id, checked_in = anchor
    hours = round((due_at - since).total_seconds() / 3600)
    when = day_time(since, pack.program_calendar.zone)
    rhythm = rhythm_before(state, since, pack) if checked_in else None
    usual = (
        f" The patient checked in on {rhythm.checkin_days} of the {rhythm.days} days before; for them "
        f"{unusual_after(rhythm, pack)} days in a row without one happen less than "
        f"{pack.rules.silence.unlikely_below * 100:g}% of the time."
        if rhythm is not None
        else ""
    )
    explanation = (
        f"No check-in for {count(hours, 'hour')}: the last one was on {when}.{usual}"
        if checked_in
        else f"No check-in since enrollment on {when} ({count(hours, 'hour')})."
    )
    return [
        signal(
            "silence",
            pack.rules.silence,
            severity=step.severity,
            episode=anchor_id,
            title=f"No check-in for {count(hours, 'hour')}",
            explanation=explanation,
            action=ACTION,
            at=due_at,
            event_ids=[anchor_id],
            facts={
                "hours_without_checkin": hours,
                "threshold_hours": hours,
                "floor_hours": step.hours,
                "usual_checkin_days": rhythm.checkin_days if rhythm is not None else None,
                "baseline_days": rhythm.days if rhythm is not None else None,
                "since": since.isoformat(),
                "since_what": "last check-in" if checked_in else "enrollment",
            },
        )
    ]


def silence_ended(state: PatientState, event: CheckInSubmitted, pack: RulePack) -> list[Finding]:
    """A check-in after a silence long enough to have alerted ends that silence."""
    checkins = state.checkins
    index = checkin_index(checkins, event.id)
    if index < 0 or index != len(checkins) - 1:
        return []  # a late check-in older than the latest does not end the current silence
    if index > 0:
        since, anchor_id = checkins[index - 1].at, checkins[index - 1].event_id
    elif state.enrollment is not None:
        since, anchor_id = state.enrollment.enrolled_at, state.enrollment.event_id
    else:
        return []
    silent = event.time - since
    delay = silence_delay(rhythm_before(state, since, pack), pack) if index > 0 else timedelta(0)
    if silent < pack.rules.silence.after[0].after + delay:
        return []
    hours = silent.total_seconds() / 3600
    return [
        clearance(
            "silence",
            f"checked in on {day_time(event.time, pack.program_calendar.zone)} after {round(hours)} hours",
            event.time,
            anchor_id,
        )
    ]

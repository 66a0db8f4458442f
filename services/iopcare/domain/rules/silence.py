"""Silence: no check-in for 48 hours (medium), then 72 hours (high).

One silence is one episode, named after the check-in it counts from (or the enrollment, before the
first check-in): the 72-hour signal raises the severity of the 48-hour alert instead of adding a
second one. The next check-in ends the silence and clears it.
"""

from __future__ import annotations

from datetime import datetime

from iopcare.contract import CheckInSubmitted
from iopcare.domain.engagement import PatientState
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


def silence(state: PatientState, step: SilenceStep, due_at: datetime, pack: RulePack) -> list[Finding]:
    """No check-in for ``step.hours`` hours (called by the absence sweep when that time has come)."""
    anchor = silence_anchor(state)
    if anchor is None:
        return []
    since, anchor_id, checked_in = anchor
    hours = round((due_at - since).total_seconds() / 3600)
    when = day_time(since, pack.program_calendar.zone)
    explanation = (
        f"No check-in for {count(hours, 'hour')}: the last one was on {when}."
        if checked_in
        else f"No check-in since enrollment on {when} ({count(hours, 'hour')})."
    )
    return [
        signal(
            "silence",
            pack.rules.silence,
            severity=step.severity,
            episode=anchor_id,
            title=f"No check-in for {count(step.hours, 'hour')}",
            explanation=explanation,
            action=ACTION,
            at=due_at,
            event_ids=[anchor_id],
            facts={
                "hours_without_checkin": hours,
                "threshold_hours": step.hours,
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
    if silent < pack.rules.silence.after[0].after:
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

"""Which rules an event can affect, and the week close that the absence sweep runs.

:func:`evaluate_event` dispatches on the event type: only the rules that event can change are run,
which keeps the offline backtest fast (most events are check-ins and attendance).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from iopcare.contract import (
    CheckInSubmitted,
    FamilyTherapyBooked,
    FamilyTherapyCancelled,
    FamilyTherapyNoShow,
    InboundEvent,
    LevelOfCareChanged,
    PatientEnrolled,
    SessionAttended,
    SessionMissed,
    SessionScheduled,
    SoberLivingReported,
    ToxicologyResulted,
)
from iopcare.domain.engagement import PatientState
from iopcare.domain.rules.craving import craving_high, craving_rising
from iopcare.domain.rules.household import (
    family_booked,
    family_cancellations,
    family_no_show,
    sober_living_incident,
)
from iopcare.domain.rules.levels import (
    step_down,
    step_down_withdrawn,
    step_up,
    step_up_on_use,
    stepped_down,
    stepped_up,
)
from iopcare.domain.rules.misses import (
    early_disengagement,
    early_disengagement_corrected,
    missed_in_a_row,
    missed_often,
    missed_often_corrected,
    missed_often_over,
    run_of_misses_ended,
)
from iopcare.domain.rules.mood import mood_low
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.rules.safety import safety
from iopcare.domain.rules.silence import silence_ended
from iopcare.domain.rules.use import positive_screen, reported_use
from iopcare.domain.rules.weeks import Weeks, fellowship_shortfall, weekly_plan_shortfall
from iopcare.domain.signals import Finding

EventRule = Callable[[PatientState, Any, RulePack], list[Finding]]

# Event type -> (rule id, rule) in the order their findings are listed. Safety first: it is critical.
_USE_LEVELS: tuple[tuple[str, EventRule], ...] = (
    ("step_up", step_up_on_use),
    ("step_down", step_down_withdrawn),
)
EVENT_RULES: dict[type, tuple[tuple[str, EventRule], ...]] = {
    CheckInSubmitted: (
        ("safety", safety),
        ("reported_use", reported_use),
        ("craving_high", craving_high),
        ("craving_rising", craving_rising),
        ("mood_low", mood_low),
        ("silence", silence_ended),
        *_USE_LEVELS,
    ),
    ToxicologyResulted: (("positive_screen", positive_screen), *_USE_LEVELS),
    SoberLivingReported: (("sober_living_incident", sober_living_incident), *_USE_LEVELS),
    # A session recorded as attended or excused may correct an unexcused miss: the misses rules
    # judge again what a miss there would have been part of (misses.py, "A correction").
    SessionMissed: (
        ("missed_in_a_row", missed_in_a_row),
        ("missed_in_a_row", run_of_misses_ended),
        ("missed_often", missed_often),
        ("missed_often", missed_often_corrected),
        ("early_disengagement", early_disengagement),
        ("early_disengagement", early_disengagement_corrected),
    ),
    SessionAttended: (
        ("missed_in_a_row", run_of_misses_ended),
        ("missed_often", missed_often_corrected),
        ("early_disengagement", early_disengagement_corrected),
    ),
    SessionScheduled: (("family_not_booked", family_booked),),
    FamilyTherapyBooked: (("family_not_booked", family_booked),),
    FamilyTherapyNoShow: (("family_no_show", family_no_show),),
    FamilyTherapyCancelled: (("family_cancellations", family_cancellations),),
    LevelOfCareChanged: (("step_up", stepped_up), ("step_down", stepped_down)),
    PatientEnrolled: (("early_disengagement", early_disengagement),),
}
"""The rules each event type can affect; event types not listed affect none."""


def evaluate_event(state: PatientState, event: InboundEvent, pack: RulePack) -> list[Finding]:
    """What the rules find about a patient once ``event`` has been applied to ``state``.

    Call it after :func:`~iopcare.domain.intake.take_in` for each event the intake *applied* (the event
    and any held reports a consent grant released), never for a held one. Pure and deterministic:
    the same state and event give the same findings. An event from after the patient's discharge
    raises nothing; one from before it is judged as in care, even if the discharge arrived first:
    a safety concern reported the day before discharge must not be lost because a clinic system
    sent the discharge sooner (arrival order within the lateness window must not change alerts).
    """
    rules = EVENT_RULES.get(type(event), ())
    if not rules and type(event) not in pack.local_event_rules:
        return []
    if state.discharge is not None and event.time >= state.discharge.at:
        return []
    findings: list[Finding] = []
    enabled = pack.enabled_rules
    for rule_id, rule in rules:
        if rule_id in enabled:
            findings.extend(rule(state, event, pack))
    for local in pack.local_event_rules.get(type(event), ()):
        findings.extend(local(state, event, pack))
    return findings


def week_closed(state: PatientState, week: int, at: datetime, pack: RulePack) -> list[Finding]:
    """The findings of a program week's close (the absence sweep calls this after the grace period):
    the week against the plan and the fellowship plan, the step-up and step-down judgements, and
    the end of an episode of frequent misses."""
    if state.enrollment is None or state.discharge is not None:
        return []
    rules = pack.rules
    weeks = Weeks(state, pack)
    findings: list[Finding] = []
    if rules.weekly_plan_shortfall.enabled:
        findings.extend(weekly_plan_shortfall(state, week, at, pack, weeks))
    if rules.fellowship_shortfall.enabled:
        findings.extend(fellowship_shortfall(state, week, at, pack, weeks))
    if rules.missed_often.enabled:
        findings.extend(missed_often_over(state, at, pack))
    if rules.step_up.enabled:
        findings.extend(step_up(state, at, pack, weeks))
    if rules.step_down.enabled:
        findings.extend(step_down(state, week, at, pack, weeks))
    return findings

"""`iop.care_team.changed` and `iop.treatment_plan.changed`: a transfer or a new weekly plan without a
second enrollment (the program goes on); open alerts follow the patient to the new counselor, and
each program week is judged by the plan in effect when it started."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.domain.rules.clinic import START, Patient, at, state_of

from iopcare.contract import CareTeamChanged, TreatmentPlanChanged
from iopcare.domain.backtest import StreamReplay
from iopcare.domain.rules.weeks import week_against_plan
from iopcare.rulepacks import DEFAULT_PACK


def _team(patient: Patient, when, counselor: str = "staff-c07") -> object:
    return patient._add(
        CareTeamChanged,
        when,
        {"counselor_id": counselor, "supervisor_id": "staff-s09", "reason_code": "transfer"},
    )


def _plan(patient: Patient, when, effective_day: int, groups: int) -> object:
    plan = {
        "group_sessions": groups,
        "individual_sessions": 1,
        "hours": 3 * groups + 0.5,
        "fellowship_meetings": 0,
    }
    return patient._add(
        TreatmentPlanChanged,
        when,
        {"weekly_plan": plan, "effective_from": (START + timedelta(days=effective_day)).isoformat()},
    )


def test_a_transfer_changes_the_care_team_without_restarting_the_program() -> None:
    patient = Patient()
    enrolled = patient.enrolled()
    _team(patient, at(10, 9))
    state = state_of(patient.events)
    assert state.care_team == ("staff-c07", "staff-s09")
    assert state.enrollment is not None and state.enrollment.event_id == enrolled.id  # same program
    # A re-enrollment later than the change brings its own team; a change after it wins again.
    patient.enrolled(when=at(20, 9), counselor="staff-c02", supervisor="staff-s02")
    assert state_of(patient.events).care_team == ("staff-c02", "staff-s02")
    _team(patient, at(21, 9), counselor="staff-c03")
    assert state_of(patient.events).care_team == ("staff-c03", "staff-s09")


def test_open_alerts_are_handed_to_the_new_counselor_with_the_reason() -> None:
    patient = Patient()
    patient.enrolled()
    patient.checkin(at(0, 20), use=True)
    change = _team(patient, at(1, 9))
    replay = StreamReplay(DEFAULT_PACK)
    changes = [c for event in patient.events for _, fx in replay.feed(event) for c in fx.changes]
    handed = [c for c in changes if c.at == change.time]
    assert [(c.kind, c.alert.rule_id) for c in handed] == [("updated", "reported_use")]
    assert handed[0].reason == "care team changed: counselor staff-c07, supervisor staff-s09"


def test_each_week_is_judged_by_the_plan_in_effect_when_it_started() -> None:
    patient = Patient()
    patient.enrolled(fellowship=0)
    _plan(patient, at(5, 9), effective_day=7, groups=2)  # from week 2: 2 groups, 1 individual, 6.5 h
    for week in (1, 2):
        first = 7 * (week - 1)
        patient.session(at(first, 18))
        patient.session(at(first + 1, 18))
        patient.session(at(first + 2, 10), kind="individual")
    state = state_of(patient.events)
    week_1 = week_against_plan(state, 1, DEFAULT_PACK)
    week_2 = week_against_plan(state, 2, DEFAULT_PACK)
    assert week_1.group_sessions_expected == 4 and week_1.sessions_short
    assert week_2.group_sessions_expected == 2 and week_2.hours_expected == 6.5 and not week_2.sessions_short


def test_an_alert_before_the_enrollment_goes_to_the_supervisor_queue_at_once() -> None:
    patient = Patient()
    crisis = patient.checkin(at(0, 7), safety=True)  # the check-in app was set up before intake
    enrolled = patient.enrolled()
    replay = StreamReplay(DEFAULT_PACK)
    changes = [c for event in patient.events for _, fx in replay.feed(event) for c in fx.changes]
    first = [c for c in changes if c.at == crisis.time]
    assert [(c.kind, c.alert.rule_id) for c in first] == [("created", "safety"), ("escalated", "safety")]
    assert first[1].reason == "no counselor yet (before the enrollment): to the supervisor queue at once"
    assigned = [c for c in changes if c.at == enrolled.time]
    assert [(c.kind, c.reason) for c in assigned] == [
        ("updated", "counselor assigned at enrollment: counselor staff-c01, supervisor staff-s01")
    ]

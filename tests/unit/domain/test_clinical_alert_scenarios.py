"""Clinical scenarios at the level counselors see: rules and the alert lifecycle together, on a
controllable clock (the backtest's stream clock, or explicit times)."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.domain.rules.clinic import Patient, at

from iopcare.domain.alerts import PatientAlerts, fixed_deadlines
from iopcare.domain.backtest import run_backtest
from iopcare.domain.engagement import PatientState
from iopcare.domain.intake import take_in
from iopcare.domain.rules import evaluate_event
from iopcare.rulepacks import DEFAULT_PACK

DEADLINE = fixed_deadlines(
    DEFAULT_PACK.response_targets_by_severity(), DEFAULT_PACK.response_targets.business_day_starts_at_hour
)


def _live(patient: Patient) -> tuple[PatientAlerts, list]:
    """Each event through intake, rules and lifecycle, with 'now' = the event's time."""
    state, alerts, changes = (
        PatientState(patient_id=patient.patient_id),
        PatientAlerts(patient.patient_id),
        [],
    )
    for event in patient.events:
        for applied in take_in(state, event).applied:
            found = evaluate_event(state, applied, DEFAULT_PACK)
            changes += alerts.take(
                found, pack_version=DEFAULT_PACK.version, now=applied.time, deadline=DEADLINE
            )
    return alerts, changes


def test_a_crisis_checkin_raises_one_critical_alert_that_inhibits_the_rest_and_escalates_in_15_minutes() -> (
    None
):
    patient = Patient()
    patient.enrolled()
    patient.checkin(at(1, 19), craving=9)  # craving high: a medium alert first
    crisis = patient.checkin(at(2, 19), craving=9, safety=True, phq9=2)
    patient.checkin(at(2, 19, 5), craving=9, use=True)  # reported use five minutes later
    alerts, _ = _live(patient)

    critical = [a for a in alerts.alerts.values() if a.severity == "critical"]
    assert [a.rule_id for a in critical] == ["safety"]
    assert crisis.id in critical[0].event_ids
    others = [a for a in alerts.alerts.values() if a.severity != "critical" and a.live]
    assert others and all(a.inhibited_by == critical[0].alert_id for a in others)
    assert all(a.escalate_at is None for a in others)

    # The clock moves on: at 14:59 nothing, at 15:00 the critical alert (only) goes to the supervisor.
    assert alerts.due(crisis.time + timedelta(minutes=14, seconds=59), DEADLINE) == []
    escalations = alerts.due(crisis.time + timedelta(minutes=15), DEADLINE)
    assert [(c.kind, c.alert.rule_id) for c in escalations] == [("escalated", "safety")]
    assert alerts.due(crisis.time + timedelta(days=2), DEADLINE) == []  # once, and the rest stay quiet

    # Acknowledged in time instead: no escalation.
    acked, _ = _live(patient)
    safety = next(a for a in acked.alerts.values() if a.rule_id == "safety")
    acked.acknowledge(safety.alert_id, "staff-c01", crisis.time + timedelta(minutes=10))
    assert acked.due(crisis.time + timedelta(hours=1), DEADLINE) == []


def test_a_burst_of_five_misses_in_a_row_is_one_alert_updated_not_five() -> None:
    patient = Patient()
    patient.enrolled()
    patient.session(at(7), "attended")  # program week 2, after the first sessions
    for day in (8, 9, 10, 11, 12):
        patient.session(at(day), "missed")
    alerts, changes = _live(patient)
    in_a_row = [a for a in alerts.alerts.values() if a.rule_id == "missed_in_a_row"]
    assert len(in_a_row) == 1
    assert in_a_row[0].occurrences == 4  # misses 2 to 5 each trigger; one alert counts them
    assert [c.kind for c in changes if c.alert.rule_id == "missed_in_a_row"] == [
        "created",
        "updated",
        "updated",
        "updated",
    ]
    # Every rule that fired on the burst raised one alert, not one per miss.
    rules = [a.rule_id for a in alerts.alerts.values()]
    assert len(rules) == len(set(rules))


def test_a_compliant_patient_over_90_days_raises_nothing_but_step_down_eligibility() -> None:
    patient = Patient()
    patient.enrolled()
    patient.family_consent()
    for week in range(1, 14):
        if week % 2 == 1:  # family therapy every other week, on Thursday, booked on the Monday
            starts = at(7 * (week - 1) + 3, 17)
            patient.family(at(7 * (week - 1), 12), "booked", f"ft-{week}", starts)
            patient.family(starts + timedelta(hours=1), "attended", f"ft-{week}", starts)
        patient.week_on_plan(week)
    result = run_backtest(sorted(patient.events, key=lambda e: e.time), DEFAULT_PACK)
    assert {a.rule_id for a in result.alerts.values()} == {"step_down"}
    assert result.changes["escalated"] == 0


def test_a_relapsing_patient_raises_reported_use_then_step_up_with_the_evidence() -> None:
    patient = Patient()
    patient.enrolled()
    for week in range(1, 4):
        patient.week_on_plan(week)
    first_use = patient.checkin(at(22, 20), craving=7, use=True)
    patient.session(at(23), "attended")
    second_use = patient.checkin(at(24, 20), craving=8, use=True)
    result = run_backtest(sorted(patient.events, key=lambda e: e.time), DEFAULT_PACK)
    by_rule = {a.rule_id: a for a in result.alerts.values()}
    assert "reported_use" in by_rule and "step_up" in by_rule
    step_up = by_rule["step_up"]
    assert {first_use.id, second_use.id} <= set(step_up.event_ids)
    assert "2.5" in step_up.explanation
    # The step-up recommendation summarizes the use alerts it stands on.
    assert by_rule["reported_use"].state == "resolved"
    assert by_rule["reported_use"].resolution == "superseded by the step_up recommendation"

"""Whole courses: a patient who meets the plan, the synthetic cohort's relapsing and crisis patients, a
burst of misses; and every signal the cohort produces fits the alert contract."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date, timedelta
from functools import cache

from tests.unit.domain.rules.clinic import START, Alerts, Patient, at, course, signals

from iopcare.contract import AlertEventData, CheckInSubmitted, LevelOfCareChanged
from iopcare.domain.backtest import Found
from iopcare.domain.backtest import findings_over as backtest
from iopcare.domain.engagement import PatientState
from iopcare.domain.intake import take_in
from iopcare.domain.rules import evaluate_event
from iopcare.domain.signals import Clearance, Signal
from iopcare.rulepacks import DEFAULT_PACK
from iopcare.simulation import cohort_outcomes, cohort_roster, generate_cohort

COHORT_START = date(2026, 3, 2)


@cache
def _cohort(archetype: str, patients: int = 12, seed: int = 7) -> tuple[list, list[Found]]:
    events = generate_cohort(patients, seed=seed, start=COHORT_START, archetype_mix={archetype: 1.0})
    return events, list(backtest(events, DEFAULT_PACK))


def _by_patient(found: list[Found]) -> dict[str, list[Found]]:
    grouped: dict[str, list[Found]] = defaultdict(list)
    for item in found:
        grouped[item.patient_id].append(item)
    return grouped


def test_a_patient_meeting_the_plan_for_90_days_raises_nothing_but_step_down_eligibility() -> None:
    patient = Patient()
    patient.enrolled()
    patient.family_consent()
    for week in range(1, 14):
        patient.week_on_plan(week)
    for number, day in enumerate(range(7, 90, 14)):  # family therapy every other week
        booking = f"fb-{number}"
        patient.family(at(day - 5, 9), "booked", booking, at(day, 16))
        patient.family(at(day, 17, 10), "attended", booking, at(day, 16))
    found = course(patient.events, until=at(91, 12))
    alerts = Alerts.of(found)
    assert alerts.rules() == {"step_down": 1}
    step_downs = signals(found, "step_down")
    assert [s.facts["to_week"] for s in step_downs] == list(range(4, 14))  # from week 4, every week close
    assert {type(f.finding) for f in found} == {Signal, Clearance}
    # The first five sessions all recorded without an unexcused miss clear the early disengagement a
    # corrected miss there would have left: there is no such alert, so nothing changes.
    assert {f.finding.rule_id for f in found if isinstance(f.finding, Clearance)} == {
        "weekly_plan_shortfall",
        "fellowship_shortfall",
        "early_disengagement",
    }


def test_steady_cohort_patients_raise_no_clinical_risk_alert() -> None:
    _, found = _cohort("steady")
    raised = {s.rule_id for s in signals(found)}
    assert not raised & {
        "safety",
        "reported_use",
        "positive_screen",
        "craving_high",
        "step_up",
        "missed_often",
    }
    assert "step_down" in raised


def test_improving_cohort_patients_who_stay_clean_become_step_down_eligible() -> None:
    _, found = _cohort("improving")
    outcomes = cohort_outcomes(12, seed=7, start=COHORT_START, archetype_mix={"improving": 1.0})
    clean = {
        o.patient_id
        for o in outcomes
        if o.dropout is None and not any(not lapse.before_intake for lapse in o.lapses)
    }
    eligible = {
        f.patient_id for f in found if isinstance(f.finding, Signal) and f.finding.rule_id == "step_down"
    }
    assert len(clean) >= 6 and len(clean & eligible) >= 0.8 * len(clean), (clean, eligible)


def test_a_relapsing_patient_is_stepped_up_on_use_with_its_evidence() -> None:
    events, found = _cohort("relapsing")
    stepped_up_by_clinician = {e.subject for e in events if isinstance(e, LevelOfCareChanged)}
    recommended = 0
    for patient_id, mine in _by_patient(found).items():
        uses = [
            f.finding
            for f in mine
            if isinstance(f.finding, Signal) and f.finding.rule_id in ("reported_use", "positive_screen")
        ]
        step_ups = [
            f.finding for f in mine if isinstance(f.finding, Signal) and f.finding.rule_id == "step_up"
        ]
        if not step_ups:
            continue
        recommended += 1
        first = step_ups[0]
        assert uses and uses[0].at <= first.at, patient_id
        assert first.facts["use_signals"] >= 1 and first.facts["asam_dimensions"] in ("5", "5,6")
        assert first.supersedes and "reported_use" in first.supersedes
        assert first.event_ids
        if patient_id in stepped_up_by_clinician:
            cleared = [f for f in mine if isinstance(f.finding, Clearance) and f.finding.rule_id == "step_up"]
            assert cleared and cleared[0].finding.at > first.at
    assert recommended >= 6


def test_a_crisis_checkin_raises_one_critical_safety_signal() -> None:
    events, found = _cohort("crisis")
    checked = 0
    for patient_id, mine in _by_patient(found).items():
        crisis = next(
            (
                e
                for e in events
                if isinstance(e, CheckInSubmitted)
                and e.subject == patient_id
                and (e.data.safety_concern or (e.data.phq9_item9 or 0) > 0 or e.data.cssrs_positive)
            ),
            None,
        )
        if crisis is None:  # the patient dropped out before the crisis day
            continue
        checked += 1
        from_crisis = [f.finding for f in mine if f.cause == crisis.id and isinstance(f.finding, Signal)]
        critical = [s for s in from_crisis if s.severity == "critical"]
        assert [(s.rule_id, s.episode) for s in critical] == [("safety", crisis.id)]
        assert {s.rule_id for s in signals(mine) if s.severity == "critical"} == {"safety"}
    assert checked >= 10


def test_a_burst_of_five_misses_in_a_row_is_one_episode_per_rule() -> None:
    patient = Patient()
    patient.enrolled()
    for day in range(12):
        patient.checkin(at(day, 20))
    for day in (0, 1, 3, 5):
        patient.session(at(day, 18 if day != 5 else 10), "missed")
    patient.session(at(2, 10), "missed", kind="individual")
    # Replay-style: fold each event, then evaluate it.
    state = PatientState(patient.patient_id)
    found: list[Found] = []
    for event in sorted(patient.events, key=lambda e: e.time):
        for applied in take_in(state, event).applied:
            found.extend(
                Found(patient.patient_id, f, applied.id, applied.time)
                for f in evaluate_event(state, applied, DEFAULT_PACK)
            )
    alerts = Alerts.of(found)
    by_rule = {rule: [s for s in signals(found, rule)] for rule in alerts.rules()}
    assert {rule: len(s) for rule, s in by_rule.items()} == {
        "early_disengagement": 5,  # every miss of the first five sessions
        "missed_in_a_row": 4,  # the 2nd to the 5th miss of the run
        "missed_often": 3,  # the 3rd to the 5th miss in 14 days
    }
    assert alerts.rules() == {"early_disengagement": 1, "missed_in_a_row": 1, "missed_often": 1}
    in_a_row = by_rule["missed_in_a_row"]
    assert [s.facts["misses_in_a_row"] for s in in_a_row] == [2, 3, 4, 5]
    assert {s.episode for s in in_a_row} == {f"ses-{START:%m%d}1800-group"}
    assert in_a_row[-1].explanation.startswith(
        "5 unexcused missed sessions in a row: Mon 2 Mar (group), Tue 3 Mar (group), Wed 4 Mar (individual), "
        "Thu 5 Mar (group) and Sat 7 Mar (group)."
    )


def test_every_signal_of_the_cohort_fits_the_alert_contract() -> None:
    events = generate_cohort(40, seed=3, start=COHORT_START)
    roster = {p.patient_id: p for p in cohort_roster(40, seed=3)}
    checked = 0
    for item in backtest(events, DEFAULT_PACK):
        if not isinstance(item.finding, Signal):
            continue
        signal, patient = item.finding, roster[item.patient_id]
        AlertEventData.model_validate(
            {
                "alert_id": str(uuid.uuid5(uuid.NAMESPACE_URL, signal.dedup_key(item.patient_id))),
                "dedup_key": signal.dedup_key(item.patient_id),
                "patient_id": item.patient_id,
                "counselor_id": patient.counselor_id,
                "rule_id": signal.rule_id,
                "rule_version": signal.rule_version,
                "rule_pack_version": DEFAULT_PACK.version,
                "severity": signal.severity,
                "state": "open",
                "title": signal.title,
                "explanation": signal.explanation,
                "recommended_action": signal.recommended_action,
                "evidence": {"event_ids": list(signal.event_ids), "facts": dict(signal.facts)},
                "first_seen_at": signal.at,
                "last_seen_at": signal.at + timedelta(0),
            }
        )
        checked += 1
    assert checked > 500


def test_the_backtest_is_deterministic() -> None:
    events = generate_cohort(8, seed=5, start=COHORT_START)
    assert list(backtest(events, DEFAULT_PACK)) == list(backtest(events, DEFAULT_PACK))

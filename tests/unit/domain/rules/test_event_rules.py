"""The event rules, one clinical scenario each: exactly what the rules find after its last event."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.domain.rules.clinic import (
    FIXED_THRESHOLDS,
    START,
    T0,
    Patient,
    at,
    brief,
    findings_after,
    pack_with,
    state_of,
)
from tests.unit.domain.rules.clinic import findings_after as findings_of

from iopcare.domain.rules import evaluate_event
from iopcare.domain.signals import Clearance, Signal
from iopcare.rulepacks import DEFAULT_PACK

PROGRAM = f"program-{START.isoformat()}"


def _enrolled(house: bool = False, family: bool = False, checkins_until: int = 0) -> Patient:
    """An enrolled patient, with a check-in (craving 2) every evening before day ``checkins_until``."""
    patient = Patient()
    patient.enrolled()
    if house:
        patient.house_consent()
    if family:
        patient.family_consent()
    for day in range(checkins_until):
        patient.checkin(at(day, 20))
    return patient


def _first_week_attended(patient: Patient) -> None:
    """The first five sessions attended, so later misses are not early disengagement."""
    for day in (0, 1, 3, 5):
        patient.session(at(day, 18 if day != 5 else 10))
    patient.session(at(2, 10), kind="individual")


def _only_signal(findings: list) -> Signal:
    (signal,) = [f for f in findings if isinstance(f, Signal)]
    return signal


def _of(findings: list, rule_id: str) -> list:
    return [f for f in findings if f.rule_id == rule_id]


def _signal(findings: list, rule_id: str) -> Signal:
    (signal,) = [f for f in findings if isinstance(f, Signal) and f.rule_id == rule_id]
    return signal


# --- safety ----------------------------------------------------------------------------------------


def test_a_checkin_with_thoughts_of_self_harm_raises_one_critical_safety_signal() -> None:
    patient = _enrolled(checkins_until=3)
    crisis = patient.checkin(at(3, 20, 42), craving=4, safety=True, phq9=2, cssrs=True)
    findings = findings_after(patient.events)
    assert brief(findings) == [("signal", "safety", "critical", crisis.id)]
    signal = _only_signal(findings)
    assert signal.title == "Safety concern at the check-in of Thu 5 Mar 20:42"
    assert signal.explanation.startswith(
        "At the check-in of Thu 5 Mar 20:42 the patient reported feeling unsafe, answered 2 of 3 on PHQ-9 "
        "item 9 (thoughts of self-harm) and screened positive on the C-SSRS suicide-risk screener."
    )
    assert signal.facts["phq9_item9"] == 2 and signal.facts["phq9_item9_threshold"] == 1
    assert signal.event_ids == (crisis.id,) and signal.at == crisis.time
    assert signal.recommended_action.startswith("Contact the patient today for a safety review")


def test_phq9_item9_answered_zero_raises_nothing_and_any_endorsement_alerts() -> None:
    patient = _enrolled(checkins_until=3)
    patient.checkin(at(3, 20), phq9=0, cssrs=False)
    assert findings_after(patient.events) == []
    endorsed = patient.checkin(at(4, 20), phq9=1)
    assert brief(findings_after(patient.events)) == [("signal", "safety", "critical", endorsed.id)]


def test_each_safety_checkin_is_its_own_episode_so_a_new_endorsement_always_alerts() -> None:
    patient = _enrolled(checkins_until=3)
    first = patient.checkin(at(3, 20), safety=True)
    second = patient.checkin(at(4, 20), safety=True)
    assert _only_signal(findings_after(patient.events[:-1])).episode == first.id
    assert _only_signal(findings_after(patient.events)).episode == second.id


# --- use -------------------------------------------------------------------------------------------


def test_reported_use_raises_a_high_alert_and_repeats_within_14_days_are_the_same_lapse() -> None:
    patient = _enrolled()
    patient.week_on_plan(1)
    patient.week_on_plan(2)
    first = patient.checkin(at(14, 21), craving=4, use=True)
    assert brief(findings_after(patient.events)) == [
        ("signal", "reported_use", "high", first.id),
        ("clear", "step_down", None, patient.events[0].id),  # a use signal withdraws step-down eligibility
    ]
    patient.checkin(at(15, 20))
    patient.checkin(at(16, 20))
    second = patient.checkin(at(17, 21), craving=4, use=True)
    findings = findings_after(patient.events)
    assert brief(findings) == [
        ("signal", "reported_use", "high", first.id),
        # 2 use signals in 14 days while attending: see test_level_of_care.py
        ("signal", "step_up", "high", first.id),
        ("clear", "step_down", None, patient.events[0].id),
    ]
    signal = _signal(findings, "reported_use")
    assert signal.explanation == (
        "The patient reported substance use at the check-in of Thu 19 Mar 21:00. It is the 2nd report of "
        "this lapse, which began on Mon 16 Mar (reports no more than 14 days apart count as one lapse)."
    )
    assert signal.event_ids == (second.id, first.id)


def test_use_reported_more_than_14_days_after_the_last_report_is_a_new_lapse() -> None:
    patient = _enrolled()
    for week in (1, 2, 3):
        patient.week_on_plan(week)
    patient.checkin(at(3, 21), use=True)
    later = patient.checkin(at(18, 21), use=True)
    assert _signal(findings_after(patient.events), "reported_use").episode == later.id


def test_a_positive_screen_for_a_prescribed_substance_only_raises_nothing() -> None:
    patient = _enrolled()
    patient.screen(at(8, 10), positive=["buprenorphine"], prescribed=["buprenorphine"])
    assert findings_after(patient.events) == []


def test_a_screen_positive_for_a_substance_not_prescribed_raises_a_high_alert() -> None:
    patient = _enrolled()
    screen = patient.screen(
        at(8, 10, 15), positive=["buprenorphine", "fentanyl"], prescribed=["buprenorphine"]
    )
    findings = findings_after(patient.events)
    assert brief(findings) == [
        ("signal", "positive_screen", "high", screen.id),
        ("clear", "step_down", None, patient.events[0].id),
    ]
    signal = _only_signal(findings)
    assert signal.title == "Positive toxicology screen: fentanyl"
    assert signal.explanation == (
        "The random screen collected on Tue 10 Mar 10:15 was positive for fentanyl, which the patient is "
        "not prescribed (buprenorphine is prescribed and expected)."
    )
    assert signal.facts["substances"] == "fentanyl" and signal.facts["at_intake"] is False


def test_a_positive_screen_at_intake_says_what_it_means_for_completion() -> None:
    patient = _enrolled()
    patient.screen(T0 + timedelta(minutes=40), positive=["cocaine"])
    signal = _only_signal(findings_after(patient.events))
    assert signal.facts["at_intake"] is True
    assert signal.explanation.endswith(
        "A positive screen at intake roughly halves the chance of completing treatment."
    )


# --- craving ---------------------------------------------------------------------------------------


HIGH_ONLY = pack_with({"rules.craving_rising.enabled": False})


def test_high_craving_alerts_once_per_episode_and_clears_after_a_week_below_8() -> None:
    def findings_after(events: list) -> list:
        return findings_of(events, HIGH_ONLY)

    patient = _enrolled(checkins_until=8)
    patient.checkin(at(8, 20), craving=7)
    patient.checkin(at(9, 20), craving=7)
    high = patient.checkin(at(10, 20), craving=9)
    assert brief(findings_after(patient.events)) == [("signal", "craving_high", "medium", high.id)]
    patient.checkin(at(11, 20), craving=7)
    patient.checkin(at(12, 20), craving=8)
    assert _only_signal(findings_after(patient.events)).episode == high.id  # the same episode
    patient.checkin(at(13, 20), craving=5)
    patient.checkin(at(14, 20), craving=4)
    assert findings_after(patient.events) == []  # still within 7 days of the last high craving
    for day in range(15, 19):
        patient.checkin(at(day, 20), craving=3)
    assert findings_after(patient.events) == []
    patient.checkin(at(19, 20), craving=3)  # 7 days and 0 hours: not yet over 7 days
    assert findings_after(patient.events) == []
    eased = patient.checkin(at(20, 20), craving=3)
    (cleared,) = findings_after(patient.events)
    assert isinstance(cleared, Clearance)
    assert (cleared.rule_id, cleared.episode, cleared.at) == ("craving_high", high.id, eased.time)
    assert (
        cleared.reason == "no craving of 8 or more for over 7 days since Sat 14 Mar (craving 3 on Sun 22 Mar)"
    )
    patient.checkin(at(21, 20), craving=6)
    again = patient.checkin(at(22, 20), craving=8)
    assert _signal(findings_after(patient.events), "craving_high").episode == again.id  # a new episode


def test_craving_rising_3_points_over_3_checkins_is_one_episode_while_it_keeps_rising() -> None:
    def findings_after(events: list) -> list:
        return findings_of(events, FIXED_THRESHOLDS)  # the floor rule: a rise of 3 over 3 check-ins

    patient = _enrolled(checkins_until=9)
    patient.checkin(at(9, 20), craving=2)
    patient.checkin(at(10, 20), craving=2)
    patient.checkin(at(11, 20), craving=3)
    patient.checkin(at(12, 20), craving=4)
    assert findings_after(patient.events) == []  # up 2
    rise = patient.checkin(at(13, 20), craving=6)
    findings = findings_after(patient.events)
    assert brief(findings) == [("signal", "craving_rising", "medium", rise.id)]
    assert _only_signal(findings).explanation == (
        "Craving rose by 3 points over the last 3 check-ins (Fri 13 Mar: 3, Sat 14 Mar: 4 and "
        "Sun 15 Mar: 6) to 6; there are not yet 60 check-ins in 14 days to judge it against the "
        "patient's own range, so the fixed floor applies (a rise of 3 or more ending at 0 or more)."
    )
    patient.checkin(at(14, 20), craving=7)
    assert _only_signal(findings_after(patient.events)).episode == rise.id


def test_craving_rising_clears_at_the_first_checkin_over_a_week_after_its_last_rise() -> None:
    def findings_after(events: list) -> list:
        return findings_of(events, FIXED_THRESHOLDS)  # the floor rule: a rise of 3 over 3 check-ins

    patient = _enrolled(checkins_until=9)
    patient.checkin(at(9, 20), craving=2)
    patient.checkin(at(10, 20), craving=3)
    rise = patient.checkin(at(11, 20), craving=5)  # Fri 13 Mar: 2 to 5
    assert brief(findings_after(patient.events)) == [("signal", "craving_rising", "medium", rise.id)]
    patient.checkin(at(12, 20), craving=6)  # 3 to 6: rising still, the same episode
    assert _only_signal(findings_after(patient.events)).episode == rise.id
    for day in range(13, 20):  # craving stays at 6 and rises no more
        patient.checkin(at(day, 20), craving=6)
        assert findings_after(patient.events) == []  # within 7 days of the last rise (Sat 14 Mar)
    eased = patient.checkin(at(20, 20), craving=6)
    (cleared,) = findings_after(patient.events)
    assert isinstance(cleared, Clearance)
    assert (cleared.rule_id, cleared.episode, cleared.at) == ("craving_rising", rise.id, eased.time)
    assert cleared.reason == (
        "no craving above the usual range for over 7 days since Sat 14 Mar (craving 6 on Sun 22 Mar)"
    )
    patient.checkin(at(21, 20), craving=3)  # 6 to 3: a fall
    assert findings_after(patient.events) == []  # cleared once
    patient.checkin(at(22, 20), craving=3)
    patient.checkin(at(23, 20), craving=4)
    again = patient.checkin(at(24, 20), craving=6)  # 3 to 6 over 3 check-ins: a new episode
    assert brief(findings_after(patient.events)) == [("signal", "craving_rising", "medium", again.id)]


def test_a_craving_episode_that_went_quiet_without_checkins_clears_when_the_next_one_starts() -> None:
    # No check-in in the gap: the check-in that starts the next episode also ends the last one.
    patient = _enrolled(checkins_until=8)
    first = patient.checkin(at(8, 20), craving=9)
    assert brief(_of(findings_after(patient.events), "craving_high")) == [
        ("signal", "craving_high", "medium", first.id)
    ]
    again = patient.checkin(at(17, 20), craving=8)  # 9 days later
    assert brief(_of(findings_after(patient.events), "craving_high")) == [
        ("clear", "craving_high", None, first.id),
        ("signal", "craving_high", "medium", again.id),
    ]


# --- attendance ------------------------------------------------------------------------------------


def test_second_consecutive_miss_raises_one_alert_naming_the_dates() -> None:
    patient = _enrolled()
    _first_week_attended(patient)
    patient.session(at(7, 18))  # Mon 9 Mar attended
    first = patient.session(at(8, 18), "missed")  # Tue 10 Mar
    assert findings_after(patient.events) == []
    patient.session(at(10, 18), "missed")  # Thu 12 Mar
    findings = findings_after(patient.events)
    assert brief(findings) == [("signal", "missed_in_a_row", "medium", first.data.session_id)]
    assert _only_signal(findings).explanation == (
        "2 unexcused missed group sessions in a row: Tue 10 Mar and Thu 12 Mar. "
        "The last session attended was on Mon 9 Mar (group)."
    )


def test_an_excused_miss_neither_counts_nor_breaks_the_run() -> None:
    patient = _enrolled()
    _first_week_attended(patient)
    first = patient.session(at(8, 18), "missed")
    patient.session(at(9, 10), "missed", kind="individual", excused=True)
    assert findings_after(patient.events) == []
    patient.session(at(10, 18), "missed")
    assert _only_signal(findings_after(patient.events)).episode == first.data.session_id


def test_attending_a_session_ends_the_run_and_clears_its_alert() -> None:
    patient = _enrolled()
    _first_week_attended(patient)
    first = patient.session(at(8, 18), "missed")
    patient.session(at(10, 18), "missed")
    back = patient.session(at(12, 10))
    # Had the attended session been a 3rd miss in 14 days, that episode would clear too (a no-op here).
    cleared, often = findings_after(patient.events)
    assert brief([often]) == [("clear", "missed_often", None, back.data.session_id)]
    assert isinstance(cleared, Clearance)
    assert (cleared.rule_id, cleared.episode, cleared.at) == (
        "missed_in_a_row",
        first.data.session_id,
        back.time,
    )
    assert cleared.reason == "attended group on Sat 14 Mar: the run of 2 missed sessions ended"


def test_three_misses_in_14_days_not_in_a_row_raise_missed_often() -> None:
    patient = _enrolled()
    _first_week_attended(patient)
    patient.session(at(7, 18), "missed")
    patient.session(at(8, 18))
    patient.session(at(10, 18), "missed")
    patient.session(at(12, 10))
    third = patient.session(at(14, 18), "missed")
    findings = findings_after(patient.events)
    assert brief(findings) == [("signal", "missed_often", "high", third.data.session_id)]
    assert _only_signal(findings).explanation == (
        "3 unexcused missed group sessions in the 14 days up to Mon 16 Mar: Mon 9 Mar, Thu 12 Mar and "
        "Mon 16 Mar (the threshold is 3)."
    )


def test_a_miss_in_the_first_five_sessions_is_early_disengagement_once_per_program() -> None:
    patient = _enrolled()
    patient.session(at(0, 18))
    patient.session(at(1, 18), "missed")
    findings = findings_after(patient.events)
    assert brief(findings) == [("signal", "early_disengagement", "medium", PROGRAM)]
    assert (
        "Patients with no absence in their first 5 sessions complete the program" in findings[0].explanation
    )
    patient.session(at(2, 10), "missed", kind="individual")
    assert brief(findings_after(patient.events)) == [
        ("signal", "missed_in_a_row", "medium", "ses-03031800-group"),
        ("signal", "early_disengagement", "medium", PROGRAM),
    ]


def test_an_enrollment_sent_after_an_early_miss_raises_early_disengagement() -> None:
    patient = Patient()
    patient.session(at(0, 18))
    patient.session(at(1, 18), "missed")
    patient.enrolled()  # the EHR sent the enrollment after the first sessions' attendance
    assert brief(findings_after(patient.events)) == [("signal", "early_disengagement", "medium", PROGRAM)]


def test_an_enrollment_without_early_misses_raises_nothing() -> None:
    patient = Patient()
    patient.session(at(0, 18))
    patient.enrolled()
    assert findings_after(patient.events) == []


def test_a_miss_after_the_first_five_sessions_is_not_early_disengagement() -> None:
    patient = _enrolled()
    _first_week_attended(patient)
    patient.session(at(7, 18), "missed")
    assert findings_after(patient.events) == []


# --- the recovery environment ----------------------------------------------------------------------


def test_house_reports_alert_by_kind_and_a_conflict_does_not() -> None:
    patient = _enrolled(house=True)
    patient.house(at(3, 23, 10), "curfew_violation")
    assert brief(findings_after(patient.events)) == [
        ("signal", "sober_living_incident", "low", "house-maple:curfew_violation:2026-03-05")
    ]
    assert _only_signal(findings_after(patient.events)).tier == "digest"  # a minor incident: the digest
    patient.house(at(4, 17), "conflict")
    assert findings_after(patient.events) == []
    evicted = patient.house(at(9, 14), "evicted")
    findings = findings_after(patient.events)
    assert brief(findings) == [
        ("signal", "sober_living_incident", "high", "house-maple:evicted:2026-03-11"),
        ("clear", "step_down", None, patient.events[0].id),
    ]
    signal = _only_signal(findings)
    assert signal.title == "Evicted from the sober-living house (housing instability)"
    assert signal.facts["housing_instability"] is True and signal.event_ids == (evicted.id,)


def test_a_house_report_without_the_patients_consent_raises_nothing() -> None:
    patient = _enrolled(house=False)
    patient.house(at(3, 23), "positive_test")
    assert findings_after(patient.events) == []


def test_a_family_therapy_no_show_raises_a_low_alert() -> None:
    patient = _enrolled(family=True)
    patient.family(at(4, 9), "booked", "fb-1", at(8, 16))
    patient.family(at(8, 16, 30), "no_show", "fb-1", at(8, 16))
    findings = findings_after(patient.events)
    assert brief(findings) == [("signal", "family_no_show", "low", "fb-1")]
    assert (
        findings[0].explanation
        == "Nobody came to the family-therapy appointment of Tue 10 Mar 16:00 with fam-oak."
    )


def test_two_family_cancellations_in_30_days_alert_and_a_providers_does_not_count() -> None:
    patient = _enrolled(family=True)
    patient.family(at(4, 9), "booked", "fb-1", at(8, 16))
    patient.family(at(7, 9), "cancelled", "fb-1", at(8, 16), cancelled_by="family")
    patient.family(at(15, 9), "booked", "fb-2", at(22, 16))
    patient.family(at(20, 9), "cancelled", "fb-2", at(22, 16), cancelled_by="provider")
    assert findings_after(patient.events) == []
    patient.family(at(23, 9), "booked", "fb-3", at(29, 16))
    patient.family(at(28, 9), "cancelled", "fb-3", at(29, 16), cancelled_by="patient")
    findings = findings_after(patient.events)
    assert brief(findings) == [("signal", "family_cancellations", "low", "fb-3")]
    assert findings[0].explanation == (
        "2 family-therapy appointments cancelled in 30 days: Tue 10 Mar (by the family) and Tue 31 Mar "
        "(by the patient) (the threshold is 2)."
    )


def test_the_first_family_booking_after_day_21_clears_the_none_booked_alert() -> None:
    patient = _enrolled(family=True)
    patient.family(at(25, 9), "booked", "fb-1", at(30, 16))
    assert brief(findings_after(patient.events)) == [("clear", "family_not_booked", None, PROGRAM)]
    patient.family(at(26, 9), "booked", "fb-2", at(44, 16))
    assert findings_after(patient.events) == []


def test_a_booking_before_day_21_clears_nothing() -> None:
    patient = _enrolled(family=True)
    patient.family(at(5, 9), "booked", "fb-1", at(9, 16))
    assert findings_after(patient.events) == []


# --- always ----------------------------------------------------------------------------------------


def test_a_discharged_patient_raises_nothing() -> None:
    patient = _enrolled()
    patient.discharged(at(20, 11))
    patient.checkin(at(21, 20), craving=9, safety=True, use=True)
    assert findings_after(patient.events) == []


def test_a_check_in_from_before_the_discharge_raises_its_alerts_when_the_discharge_arrived_first() -> None:
    patient = _enrolled()
    patient.discharged(at(21, 11))
    patient.checkin(at(20, 20), craving=9, safety=True, use=True)  # sent after the discharge, happened before
    rules = [f.rule_id for f in findings_after(patient.events)]
    assert "safety" in rules
    assert "reported_use" in rules


def test_the_same_state_and_event_give_the_same_findings() -> None:
    patient = _enrolled(house=True)
    patient.checkin(at(10, 20), craving=6, use=True)
    patient.session(at(10, 18))
    event = patient.house(at(11, 7), "positive_test")
    state = state_of(patient.events)
    first = evaluate_event(state, event, DEFAULT_PACK)
    assert first == evaluate_event(state, event, DEFAULT_PACK)
    assert [f.rule_id for f in first] == ["sober_living_incident", "step_up", "step_down"]


def test_a_switched_off_rule_finds_nothing() -> None:
    document = DEFAULT_PACK.model_dump()
    document["rules"]["safety"]["enabled"] = False
    pack = type(DEFAULT_PACK).model_validate(document)
    patient = _enrolled(checkins_until=3)
    patient.checkin(at(3, 20), safety=True)
    assert findings_after(patient.events, pack) == []

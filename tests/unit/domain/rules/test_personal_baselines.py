"""Personal baselines (pack default-2026.4): craving judged against the patient's own range, silence
against their own rhythm, a short week by how unusual it is, and a live step-up recommendation that
stands for the engagement alerts behind it."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests.unit.domain.rules.clinic import START, Patient, at, brief, course, findings_after, state_of

from iopcare.domain.absence import due_checks
from iopcare.domain.backtest import run_backtest
from iopcare.domain.rules.baseline import UsualRhythm
from iopcare.rulepacks import DEFAULT_PACK


def _rising(events: list) -> list:
    return [f for f in findings_after(events) if f.rule_id == "craving_rising"]


def _usual_patient(craving: int, days: int = 14) -> Patient:
    patient = Patient()
    patient.enrolled()
    for day in range(days):
        patient.checkin(at(day, 20), craving + (day % 3 == 0))  # e.g. 2, 2, 3, 2, 2, 3 ...
    return patient


# --- craving ---------------------------------------------------------------------------------------


def test_craving_above_the_patients_own_range_on_two_checkins_alerts_and_says_what_is_usual() -> None:
    patient = _usual_patient(2)
    patient.checkin(at(14, 20), 6)
    assert _rising(patient.events) == []  # one high check-in is not sustained
    second = patient.checkin(at(15, 20), 7)
    (signal,) = _rising(patient.events)
    # The episode is named after its first trigger: the second high check-in, which made it sustained.
    assert brief([signal]) == [("signal", "craving_rising", "medium", second.id)]
    assert signal.title == "Craving above the usual range: 6 and 7"
    assert signal.explanation == (
        "Craving 6 on Mon 16 Mar and 7 on Tue 17 Mar, each above the patient's usual range: over the "
        "14 days before, craving was usually 2-3 (median 2, 14 check-ins). A sustained rise above "
        "one's own range is an early warning of a lapse."
    )
    assert signal.facts["threshold"] == 6 and signal.facts["usual_high"] == 3
    assert signal.event_ids == (second.id, patient.events[-2].id)


def test_the_same_cravings_are_usual_for_a_patient_whose_range_is_higher() -> None:
    patient = _usual_patient(5)  # usually 5-6: the line is at 5 + 2 = 7 ...
    patient.checkin(at(14, 20), 6)
    patient.checkin(at(15, 20), 7)
    assert _rising(patient.events) == []
    patient.checkin(at(16, 20), 8)  # ... 7 and 8 are both above it
    assert [s.rule_id for s in _rising(patient.events)] == ["craving_rising"]


def test_a_rise_from_1_to_4_is_ordinary_noise_with_or_without_a_baseline() -> None:
    patient = _usual_patient(1)
    for day, craving in enumerate((1, 2, 4, 4), start=14):
        patient.checkin(at(day, 20), craving)
        assert _rising(patient.events) == []
    new = Patient()
    new.enrolled()
    for day, craving in enumerate((1, 2, 4)):  # no baseline yet: the floor needs 3 points up to 6
        new.checkin(at(day, 20), craving)
        assert _rising(new.events) == []
    new.checkin(at(3, 20), 6)
    assert [s.rule_id for s in _rising(new.events)] == ["craving_rising"]


# --- mood ------------------------------------------------------------------------------------------


def _mood_low(events: list) -> list:
    return [f for f in findings_after(events) if f.rule_id == "mood_low"]


def test_mood_well_below_the_patients_own_range_on_two_checkins_alerts() -> None:
    patient = Patient()
    patient.enrolled()
    for day in range(14):
        patient.checkin(at(day, 20), mood=7 + (day % 3 == 0))  # usually 7-8
    patient.checkin(at(14, 20), mood=4)
    assert _mood_low(patient.events) == []  # one low day is not sustained
    patient.checkin(at(15, 20), mood=3)
    (signal,) = _mood_low(patient.events)
    assert signal.title == "Mood below the usual range: 4 and 3"
    assert signal.explanation == (
        "Mood 4 on Mon 16 Mar and 3 on Tue 17 Mar (0-10), each below the patient's usual: over the 14 "
        "days before, mood was usually 7-8 (median 7, 14 check-ins). Low mood, like craving, often "
        "comes before a lapse."
    )
    assert signal.facts["threshold"] == 4


def test_a_patient_whose_mood_is_usually_low_is_not_asked_about_the_same_mood() -> None:
    patient = Patient()
    patient.enrolled()
    for day in range(14):
        patient.checkin(at(day, 20), mood=4 + (day % 3 == 0))  # usually 4-5: the line is at 1
    patient.checkin(at(14, 20), mood=3)
    patient.checkin(at(15, 20), mood=3)
    assert _mood_low(patient.events) == []
    new = Patient()
    new.enrolled()
    new.checkin(at(0, 20), mood=2)
    new.checkin(at(1, 20), mood=2)  # no baseline yet: 2 or less on both is low for anyone
    assert [s.rule_id for s in _mood_low(new.events)] == ["mood_low"]


# --- silence ---------------------------------------------------------------------------------------


def _silence_due(patient: Patient) -> list[timedelta]:
    state = state_of(patient.events)
    last = state.checkins[-1].at
    return sorted(c.due_at - last for c in due_checks(state, DEFAULT_PACK) if c.kind == "checkin_silence")


def test_a_patient_who_checks_in_every_day_is_asked_after_three_missed_days_not_one() -> None:
    daily = _usual_patient(2)
    # 14 of 14 days: the chance of missing 1 day is about 6 %, of 2 in a row 0.4 %, of 3 under 0.3 %
    # (the pack's line: about one chance in four of such a silence by chance in 90 days).
    assert UsualRhythm(14, 14).missed_days_unlikely_below(0.003) == 3
    assert _silence_due(daily) == [timedelta(hours=96), timedelta(hours=120)]
    early = course(daily.events, until=at(13, 20) + timedelta(hours=95))
    assert [f for f in early if f.finding.rule_id == "silence"] == []
    found = course(daily.events, until=at(13, 20) + timedelta(hours=100))
    (signal,) = [f.finding for f in found if f.finding.rule_id == "silence"]
    assert signal.explanation == (
        "No check-in for 96 hours: the last one was on Sun 15 Mar 20:00. The patient checked in on 14 "
        "of the 14 days before; for them 3 days in a row without one happen less than 0.3% of the time."
    )
    # The line is the pack's: at 1 % the same patient is asked after 2 days.
    assert UsualRhythm(14, 14).missed_days_unlikely_below(0.01) == 2


def test_a_patient_who_checks_in_every_other_day_is_asked_after_a_week() -> None:
    patient = Patient()
    patient.enrolled()
    for day in range(0, 14, 2):
        patient.checkin(at(day, 20))
    assert UsualRhythm(7, 13).missed_days_unlikely_below(0.003) == 8
    assert _silence_due(patient)[0] == timedelta(days=9)


def test_until_three_days_of_checkins_the_floors_apply() -> None:
    patient = Patient()
    patient.enrolled()
    patient.checkin(at(0, 20))
    patient.checkin(at(1, 20))
    assert _silence_due(patient) == [timedelta(hours=48), timedelta(hours=72)]


# --- a short week ----------------------------------------------------------------------------------


def _week_missing_one(patient: Patient, week: int, excused: bool = False) -> None:
    first = 7 * (week - 1)
    patient.session(at(first, 18), "missed", excused=excused)
    patient.session(at(first + 1, 18))
    patient.session(at(first + 2, 10), kind="individual")
    patient.session(at(first + 3, 18))
    patient.session(at(first + 5, 10))
    for offset in range(7):
        patient.checkin(at(first + offset, 20))


def test_one_short_week_with_one_miss_waits_and_the_third_in_a_row_alerts_named_after_the_first() -> None:
    patient = Patient()
    patient.enrolled(fellowship=0)
    _week_missing_one(patient, 1)
    _week_missing_one(patient, 2)
    short = [
        f for f in course(patient.events, until=at(15, 12)) if f.finding.rule_id == "weekly_plan_shortfall"
    ]
    assert short == []
    _week_missing_one(patient, 3)
    found = course(patient.events, until=at(22, 12))
    (signal,) = [f.finding for f in found if f.finding.rule_id == "weekly_plan_shortfall"]
    assert signal.episode == f"{START.isoformat()}/week-1" and signal.facts["weeks_in_a_row"] == 3


def test_a_week_with_three_unexcused_misses_alerts_at_once_two_wait() -> None:
    patient = Patient()
    patient.enrolled(fellowship=0)
    _week_missing_one(patient, 1)
    patient.session(at(4, 18), "missed", kind="individual", session_id="extra")
    two = course(patient.events, until=at(8, 12))
    assert [f for f in two if f.finding.rule_id == "weekly_plan_shortfall"] == []
    patient.session(at(6, 10), "missed", kind="individual", session_id="another")
    found = course(patient.events, until=at(8, 12))
    assert [f.finding.rule_id for f in found if f.finding.rule_id == "weekly_plan_shortfall"] == [
        "weekly_plan_shortfall"
    ]


# --- a live step-up stands for the engagement alerts behind it -------------------------------------


def test_while_a_step_up_is_live_misses_open_no_new_alert_but_use_still_does() -> None:
    patient = Patient()
    patient.enrolled()
    for day in range(7):
        patient.checkin(at(day, 20))
    patient.checkin(at(7, 20), use=True)
    patient.screen(at(8, 9), positive=["cocaine"])
    patient.session(at(8, 18))  # attending: use despite participation, a step up
    before = _alerts(patient, until=at(9, 12))
    assert before.count("step_up") == 1
    for day in (10, 11, 14, 15, 17):  # then a run of misses: missed in a row, missed often
        patient.session(at(day, 18), "missed")
    patient.checkin(at(28, 20), use=True)  # a new report more than 14 days on: its own alert
    after = _alerts(patient, until=at(29, 12))
    assert "missed_in_a_row" not in after and "missed_often" not in after
    assert after.count("reported_use") == 2 and after.count("step_up") == 1


def _alerts(patient: Patient, until: datetime) -> list[str]:
    """The rule ids of the alerts the lifecycle raised (not the rules' signals)."""
    result = run_backtest(sorted(patient.events, key=lambda e: e.time), DEFAULT_PACK, until=until)
    return [alert.rule_id for alert in result.alerts.values()]

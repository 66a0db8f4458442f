"""Level-of-care recommendations: step up when use continues despite treatment, step down when
recovery holds. The system recommends; the clinician's level change settles it."""

from __future__ import annotations

from tests.unit.domain.rules.clinic import START, Patient, at, brief, findings_after, state_of

from iopcare.domain.absence import due_checks, observe
from iopcare.domain.signals import Clearance, Finding, Signal
from iopcare.rulepacks import DEFAULT_PACK

SUPERSEDES = (
    "reported_use",
    "positive_screen",
    "craving_high",
    "craving_rising",
    "missed_in_a_row",
    "missed_often",
    "weekly_plan_shortfall",
)


def _signal(findings: list[Finding], rule_id: str) -> Signal:
    (signal,) = [f for f in findings if isinstance(f, Signal) and f.rule_id == rule_id]
    return signal


def _week_close(patient: Patient, week: int) -> list[Finding]:
    state = state_of(patient.events)
    (check,) = [
        c for c in due_checks(state, DEFAULT_PACK) if c.key == f"week_close:{START.isoformat()}:{week}"
    ]
    return observe(state, check, DEFAULT_PACK)


def _attending(weeks: int = 2) -> Patient:
    patient = Patient()
    patient.enrolled()
    patient.house_consent()
    for week in range(1, weeks + 1):
        patient.week_on_plan(week)
    return patient


# --- step up ---------------------------------------------------------------------------------------


def test_two_use_signals_in_14_days_while_attending_recommend_a_step_up_with_its_evidence() -> None:
    patient = _attending()
    reported = patient.checkin(at(14, 21), craving=5, use=True)
    screen = patient.screen(at(15, 10), positive=["fentanyl", "opiate"])
    findings = findings_after(patient.events)
    assert brief(findings) == [
        ("signal", "positive_screen", "high", screen.id),
        ("signal", "step_up", "high", reported.id),  # named after the lapse's first use signal
        ("clear", "step_down", None, patient.events[0].id),
    ]
    step_up = _signal(findings, "step_up")
    assert step_up.title == "Consider a step up from 2.1: use despite treatment"
    assert step_up.explanation == (
        "Use continues despite active participation at level 2.1: 2 use signals in 14 days while attending "
        "treatment (8 sessions attended): use reported Mon 16 Mar and positive screen (fentanyl, opiate) "
        "Tue 17 Mar. ASAM dimension 5 (relapse/continued-use potential) points to more support than this "
        "level gives. Consider a step up to 2.5 (partial hospitalization) or 3.1/3.3/3.5/3.7. The system "
        "recommends; a clinician decides after reassessment."
    )
    assert step_up.event_ids[:2] == (screen.id, reported.id)
    assert step_up.supersedes == SUPERSEDES
    assert step_up.facts["patterns"] == "repeated_use_while_attending"
    assert step_up.facts["use_signals"] == 2 and step_up.facts["use_signals_threshold"] == 2
    assert step_up.facts["asam_dimensions"] == "5"
    assert step_up.facts["recommended_levels"] == "2.5,3.1,3.3,3.5,3.7"


def test_a_use_signal_with_attendance_below_half_the_plan_for_two_weeks_recommends_a_step_up() -> None:
    patient = Patient()
    patient.enrolled()
    for day in range(15):
        patient.checkin(at(day, 20))
    patient.session(at(0, 18))  # one session of five in week 1, one in week 2
    patient.session(at(7, 18))
    reported = patient.checkin(at(15, 21), use=True)
    findings = findings_after(patient.events)
    assert brief(findings) == [
        ("signal", "reported_use", "high", reported.id),
        ("signal", "step_up", "high", reported.id),
        ("clear", "step_down", None, patient.events[0].id),
    ]
    step_up = _signal(findings, "step_up")
    assert step_up.facts["patterns"] == "use_with_low_attendance"
    assert step_up.facts["attendance_last_weeks"] == "1:0.20,2:0.20"
    assert "attendance below 50% of the plan for 2 weeks in a row (week 1: 20% and week 2: 20%)" in (
        step_up.explanation
    )


def test_an_eviction_with_a_use_signal_names_the_recovery_environment() -> None:
    patient = _attending()
    patient.house(at(14, 7), "positive_test")
    assert [f.rule_id for f in findings_after(patient.events)] == ["sober_living_incident", "step_down"]
    evicted = patient.house(at(16, 14), "evicted")
    findings = findings_after(patient.events)
    assert brief(findings) == [
        ("signal", "sober_living_incident", "high", "house-maple:evicted:2026-03-18"),
        ("signal", "step_up", "high", patient.events[-2].id),
        ("clear", "step_down", None, patient.events[0].id),
    ]
    step_up = _signal(findings, "step_up")
    assert step_up.facts["patterns"] == "eviction_with_use" and step_up.facts["asam_dimensions"] == "5,6"
    assert (
        "evicted from the sober-living house on Wed 18 Mar, with positive test at the house Mon 16 Mar"
        in (step_up.explanation)
    )
    assert "ASAM dimensions 5 (relapse/continued-use potential) and 6 (recovery environment) point to" in (
        step_up.explanation
    )
    assert evicted.id in step_up.event_ids


def test_a_patient_already_stepped_up_gets_no_step_up_recommendation() -> None:
    patient = _attending()
    patient.level(at(13, 11), "2.5", "step_up")
    patient.checkin(at(14, 21), use=True)
    patient.checkin(at(15, 21), use=True)
    assert [f.rule_id for f in findings_after(patient.events)] == ["reported_use", "step_down"]


def test_the_clinicians_step_up_clears_the_recommendation() -> None:
    patient = _attending()
    patient.level(at(20, 11), "2.5", "step_up")
    (cleared,) = findings_after(patient.events)
    assert isinstance(cleared, Clearance)
    assert (cleared.rule_id, cleared.episode, cleared.reason) == (
        "step_up",
        None,
        "stepped up to 2.5 on Sun 22 Mar",
    )


# --- step down -------------------------------------------------------------------------------------


def test_four_weeks_meeting_the_plan_with_no_use_and_low_craving_recommend_level_1() -> None:
    patient = _attending(weeks=4)
    assert brief(_week_close(patient, 3)) == [
        ("clear", "weekly_plan_shortfall", None, None),
        ("clear", "fellowship_shortfall", None, None),
    ]
    findings = _week_close(patient, 4)
    assert brief(findings) == [
        ("clear", "weekly_plan_shortfall", None, None),
        ("clear", "fellowship_shortfall", None, None),
        ("signal", "step_down", "info", patient.events[0].id),  # one per level-of-care period
    ]
    step_down = _signal(findings, "step_down")
    assert step_down.title == "Consider a step down to 1 (outpatient)"
    assert step_down.explanation == (
        "Weeks 1-4 (Mon 2 Mar - Sun 29 Mar) all met the plan including fellowship meetings, with no use "
        "signal and a mean craving of 2 (at most 3) over 28 check-ins. Recovery is holding at level 2.1: "
        "consider a step down to 1 (outpatient). The system recommends; a clinician decides."
    )
    assert step_down.facts["mean_craving"] == 2.0 and step_down.facts["recommended_level"] == "1"
    assert step_down.supersedes == ()


def test_a_mean_craving_above_3_withholds_the_step_down() -> None:
    patient = Patient()
    patient.enrolled()
    patient.house_consent()
    for week in (1, 2, 3, 4):
        patient.week_on_plan(week, craving=4)
    (cleared,) = [f for f in _week_close(patient, 4) if f.rule_id == "step_down"]
    assert isinstance(cleared, Clearance)
    assert cleared.reason == "not eligible for a step down: mean craving 4 is above 3"


def test_a_use_signal_withdraws_the_step_down_at_once_and_at_the_next_week_close() -> None:
    patient = _attending(weeks=5)
    patient.screen(at(30, 10), positive=["alcohol"])
    assert brief(findings_after(patient.events)) == [
        ("signal", "positive_screen", "high", patient.events[-1].id),
        ("clear", "step_down", None, patient.events[0].id),
    ]
    (cleared,) = [f for f in _week_close(patient, 5) if f.rule_id == "step_down"]
    assert isinstance(cleared, Clearance) and cleared.reason.startswith(
        "not eligible for a step down: 1 use signal"
    )


def test_the_clinicians_step_down_clears_the_recommendation() -> None:
    patient = _attending(weeks=4)
    patient.level(at(29, 11), "1", "step_down")
    assert brief(findings_after(patient.events)) == [("clear", "step_down", None, None)]
    assert [f.rule_id for f in _week_close(patient, 4)] == ["weekly_plan_shortfall", "fellowship_shortfall"]


def test_step_down_names_the_packs_target_level() -> None:
    assert DEFAULT_PACK.levels.describe([DEFAULT_PACK.levels.step_down_to]) == "1 (outpatient)"

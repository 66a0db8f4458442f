"""The relapse-risk score: points per factor from the pack, each with its reason; the 7-day trend."""

from __future__ import annotations

from tests.unit.domain.rules.clinic import Patient, at, state_of

from iopcare.domain.risk import RiskFactor, risk_score, risk_trend
from iopcare.rulepacks import DEFAULT_PACK


def _steady_fortnight() -> Patient:
    patient = Patient()
    patient.enrolled()
    patient.house_consent()
    patient.week_on_plan(1)
    patient.week_on_plan(2)
    return patient


def test_a_patient_on_plan_scores_zero() -> None:
    patient = _steady_fortnight()
    score = risk_score(state_of(patient.events), at(14, 12), DEFAULT_PACK)
    assert (score.score, score.factors) == (0, ())
    assert score.explanation() == "0 of 100: no risk factor present"


def test_each_factor_adds_its_points_with_a_reason() -> None:
    patient = _steady_fortnight()
    patient.checkin(at(14, 21), craving=9, use=True)
    patient.screen(at(15, 10), positive=["fentanyl"])
    patient.session(at(15, 18), "missed")
    patient.session(at(17, 18), "missed")
    for day in (15, 16, 17):
        patient.checkin(at(day, 20), craving=8)
    score = risk_score(state_of(patient.events), at(18, 12), DEFAULT_PACK)
    assert score.factors == (
        RiskFactor("reported_use", 20, "use reported on Mon 16 Mar"),
        RiskFactor("positive_screen", 20, "positive screen (fentanyl) on Tue 17 Mar"),
        RiskFactor("craving_high", 15, "craving 9 on Mon 16 Mar"),
        RiskFactor("missed_sessions", 10, "2 unexcused missed sessions in 14 days"),
        RiskFactor("missed_in_a_row", 10, "2 unexcused missed sessions in a row"),
    )
    assert score.score == 75
    assert score.as_facts()["risk_score"] == 75 and score.as_facts()["risk.reported_use"] == 20
    assert score.explanation().startswith("75 of 100: use reported on Mon 16 Mar (+20); positive screen")


def test_the_score_is_capped_at_100() -> None:
    patient = _steady_fortnight()
    patient.checkin(at(14, 21), craving=9, mood=2, sleep=3, use=True, safety=True)
    patient.screen(at(15, 10), positive=["fentanyl"])
    patient.house(at(15, 7), "positive_test")
    patient.house(at(16, 7), "evicted")
    for day in (15, 16, 17, 18):
        patient.session(at(day, 18), "missed")
    score = risk_score(state_of(patient.events), at(19, 12), DEFAULT_PACK)
    assert sum(f.points for f in score.factors) > 100
    assert score.score == 100


def test_the_trend_compares_with_the_score_7_days_earlier_by_event_time() -> None:
    patient = _steady_fortnight()
    patient.checkin(at(14, 21), craving=9, use=True)
    patient.checkin(at(15, 21), craving=9)
    trend = risk_trend(state_of(patient.events), at(16, 12), DEFAULT_PACK)
    assert (trend.before.score, trend.now.score) == (0, 45)
    assert (trend.change, trend.direction) == (45, "rising")
    assert trend.before.as_of == at(9, 12)


def test_a_miss_recorded_later_does_not_count_for_the_earlier_score() -> None:
    patient = _steady_fortnight()
    patient.session(at(15, 18), "missed")  # recorded at 18:30 on day 15
    state = state_of(patient.events)
    assert risk_score(state, at(15, 18, 10), DEFAULT_PACK).score == 0
    assert risk_score(state, at(15, 19), DEFAULT_PACK).score == 5


def test_the_points_come_from_the_pack() -> None:
    document = DEFAULT_PACK.model_dump()
    document["risk"]["factors"]["reported_use"]["points"] = 40
    pack = type(DEFAULT_PACK).model_validate(document)
    patient = _steady_fortnight()
    patient.checkin(at(14, 21), use=True)
    assert risk_score(state_of(patient.events), at(15, 12), pack).score == 40

"""Scoring a pack against outcomes, on hand-made timelines: what counts as a hit, what a lapse nobody
foresaw does to sensitivity, lead time, burden on steady patients, the risk score's AUC and Brier
score; then `iopcare evaluate` end to end over a small synthetic cohort."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from iopcare.cli import main
from iopcare.evaluation.outcomes import LapseEpisode, PatientOutcome
from iopcare.evaluation.scoring import Followed, RaisedAlert, RiskSample, auc, brier, is_hit, score

START = date(2026, 3, 2)
TIERS = {"craving_rising": "inbox", "reported_use": "page", "fellowship_shortfall": "digest"}


def day(n: int) -> date:
    return START + timedelta(days=n)


def outcome(
    pid: str = "p-1",
    *,
    lapses: tuple[tuple[int, int], ...] = (),
    dropout: int | None = None,
    archetype: str | None = None,
    days: int = 90,
) -> PatientOutcome:
    return PatientOutcome(
        patient_id=pid,
        program_start=START,
        observed_days=days,
        lapses=tuple(LapseEpisode(start=day(a), end=day(b), use_days=b - a + 1) for a, b in lapses),
        dropout=None if dropout is None else day(dropout),
        archetype=archetype,
    )


def alert(on: int, rule: str = "craving_rising", pid: str = "p-1", horizon: int = 14) -> RaisedAlert:
    return RaisedAlert(pid, rule, TIERS[rule], horizon, day(on), "2.1")  # type: ignore[arg-type]


def followed(o: PatientOutcome) -> Followed:
    return Followed(o, "c-01", ((START, "2.1"),))


def test_an_alert_3_days_before_a_lapse_is_a_hit_and_one_20_days_before_is_not() -> None:
    lapse = outcome(lapses=((30, 33),))
    assert is_hit(alert(27), lapse)
    assert not is_hit(alert(10), lapse)
    assert is_hit(alert(31, "reported_use"), lapse)  # reports one that is happening
    assert is_hit(alert(38), lapse)  # within a week after it ended: the screen lags use
    assert not is_hit(alert(45), lapse)
    assert not is_hit(alert(20, horizon=7), lapse)  # the rule's own horizon, not the default


def test_a_dropout_is_foreseen_by_an_alert_within_the_horizon_and_reported_after() -> None:
    gone = outcome(dropout=50)
    assert is_hit(alert(40), gone) and is_hit(alert(55), gone)
    assert not is_hit(alert(30), gone) and not is_hit(alert(70), gone)


def test_a_lapse_with_no_alert_before_it_lowers_sensitivity() -> None:
    patient = outcome(lapses=((30, 31), (60, 62)))
    measures = score([followed(patient)], [alert(27)], [], tiers=TIERS)
    assert (measures.lapses, measures.lapses_foreseen) == (2, 1)
    assert measures.summary()["lapse_sensitivity"] == 0.5
    assert measures.lead_days == [3]


def test_an_alert_on_the_day_of_the_lapse_or_20_days_before_does_not_foresee_it() -> None:
    patient = outcome(lapses=((30, 31),))
    on_the_day = score([followed(patient)], [alert(30, "reported_use")], [], tiers=TIERS)
    too_early = score([followed(patient)], [alert(10)], [], tiers=TIERS)
    assert on_the_day.lapses_foreseen == too_early.lapses_foreseen == 0
    assert on_the_day.summary()["page_ppv"] == 1.0  # it is right, it just did not see it coming
    assert too_early.summary()["per_rule"]["craving_rising"]["ppv"] == 0.0


def test_a_digest_does_not_count_as_foreseeing_and_the_earliest_alert_gives_the_lead() -> None:
    patient = outcome(lapses=((30, 31),))
    digest_only = score([followed(patient)], [alert(28, "fellowship_shortfall")], [], tiers=TIERS)
    assert digest_only.lapses_foreseen == 0
    both = score([followed(patient)], [alert(22), alert(28)], [], tiers=TIERS)
    assert both.lead_days == [8]
    assert both.summary()["median_lead_days"] == 8


def test_burden_on_steady_patients_and_per_patient_week() -> None:
    quiet = outcome("p-1", archetype="steady")
    noisy = outcome("p-2", archetype="steady")
    alerts = [alert(10, pid="p-2"), alert(40, pid="p-2"), alert(41, "fellowship_shortfall", pid="p-1")]
    summary = score([followed(quiet), followed(noisy)], alerts, [], tiers=TIERS).summary()
    assert summary["steady_alerts_per_90_days"] == 1.0  # two interruptions over 180 patient-days
    assert summary["steady_share_with_none"] == 0.5  # a digest is not an interruption
    assert summary["alerts_per_patient_week"]["inbox"] == round(2 / (180 / 7), 4)
    assert summary["digests_per_counselor_day"] == round(1 / 90, 4)  # one counselor, 90 days


def test_auc_and_brier() -> None:
    assert auc([(0.9, True), (0.8, True), (0.2, False), (0.1, False)]) == 1.0
    assert auc([(0.1, True), (0.9, False)]) == 0.0
    assert auc([(0.5, True), (0.5, False)]) == 0.5
    assert auc([(0.5, True)]) is None
    assert brier([(1.0, True), (0.0, False)]) == 0.0
    assert brier([(0.5, True), (0.5, False)]) == 0.25


def test_risk_samples_are_labelled_by_a_lapse_in_the_next_seven_days() -> None:
    patient = outcome(lapses=((30, 31),))
    samples = [
        RiskSample("p-1", day(27), 60, "2.1"),
        RiskSample("p-1", day(13), 10, "2.1"),
        RiskSample("p-1", day(20), 30, "2.1"),
    ]
    measures = score([followed(patient)], [], samples, tiers=TIERS)
    assert measures.risk_auc_7d == 1.0  # only the day-27 sample has the lapse within 7 days
    assert measures.risk_brier_7d == pytest.approx(((0.6 - 1) ** 2 + 0.1**2 + 0.3**2) / 3)


def test_by_level_of_care_only_what_happened_at_that_level_counts() -> None:
    patient = Followed(outcome(lapses=((10, 11), (50, 52))), "c-01", ((START, "2.1"), (day(40), "2.5")))
    at_2_5 = score([patient], [alert(47), alert(5)], [], tiers=TIERS, level="2.5")
    assert at_2_5.lapses == 1 and at_2_5.patient_weeks == pytest.approx(50 / 7)
    # The alerts carry the level they were raised at; both here were raised at 2.1.
    assert at_2_5.lapses_foreseen == 0


def test_evaluate_prints_every_measure_as_json(tmp_path: Path) -> None:
    events, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl"
    runner = CliRunner()
    made = runner.invoke(
        main,
        [
            "cohort",
            "--patients",
            "30",
            "--seed",
            "5",
            "--days",
            "60",
            "--out",
            str(events),
            "--outcomes",
            str(outcomes),
        ],
    )
    assert made.exit_code == 0, made.output
    result = runner.invoke(main, ["evaluate", "--events", str(events), "--outcomes", str(outcomes), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    for key in (
        "alerts_per_patient_week",
        "steady_alerts_per_90_days",
        "steady_share_with_none",
        "page_ppv",
        "lapse_sensitivity",
        "dropout_sensitivity",
        "median_lead_days",
        "risk_auc_7d",
        "risk_brier_7d",
        "digests_per_counselor_day",
        "per_rule",
        "subgroups",
    ):
        assert key in report, key
    assert set(report["alerts_per_patient_week"]) == {"page", "inbox", "digest"}
    assert report["patients"] == 30 and report["lapses"] > 0
    assert 0 <= report["page_ppv"] <= 1 and 0 < report["risk_auc_7d"] <= 1
    assert {rule["tier"] for rule in report["per_rule"].values()} <= {"page", "inbox", "digest"}
    assert set(report["subgroups"]) == {"population", "level_of_care"}
    table = runner.invoke(main, ["evaluate", "--events", str(events), "--outcomes", str(outcomes)])
    assert table.exit_code == 0 and "page PPV" in table.stdout and "by population" in table.stdout


def test_evaluate_names_a_bad_outcomes_line(tmp_path: Path) -> None:
    events, outcomes = tmp_path / "events.jsonl", tmp_path / "outcomes.jsonl"
    events.write_text("")
    outcomes.write_text('{"patient_id": "p-1"}\n')
    result = CliRunner().invoke(main, ["evaluate", "--events", str(events), "--outcomes", str(outcomes)])
    assert result.exit_code == 2
    assert "outcomes.jsonl:1: not a patient outcome (program_start: Field required)" in result.stderr

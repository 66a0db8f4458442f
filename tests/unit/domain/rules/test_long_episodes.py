"""Episodes longer than the history the state keeps: still one alert, updated, not a new one per name.

A chained rule names its episode after the first trigger the state still holds. The state keeps 42
days, so in a longer episode (weeks of missed groups, a high craving every few days for two months)
the first triggers age out and the name moves on. The alert lifecycle continues the rule's live
alert instead (``Signal.continues_within``), and the rule's clearance still resolves it when the
episode ends. These scenarios run the whole chain, rules then lifecycle, as ``iopcare replay`` and
the processor do.
"""

from __future__ import annotations

from datetime import datetime

from tests.unit.domain.rules.clinic import Patient, at

from iopcare.domain.alerts import Alert
from iopcare.domain.backtest import run_backtest
from iopcare.domain.engagement import DEFAULT_TUNING
from iopcare.rulepacks import DEFAULT_PACK

GROUP_DAYS = (0, 1, 3, 5)  # Mon, Tue, Thu, Sat


def _alerts(patient: Patient, rule: str, until: datetime) -> list[Alert]:
    events = sorted(patient.events, key=lambda e: e.time)
    result = run_backtest(events, DEFAULT_PACK, until=until)
    return [alert for alert in result.alerts.values() if alert.rule_id == rule]


def _disengaging(weeks_missing: int, weeks_back: int = 0) -> Patient:
    """Week 1 attended in full, then every group missed for ``weeks_missing`` weeks, then every group
    attended for ``weeks_back`` weeks; a check-in every evening throughout."""
    patient = Patient()
    patient.enrolled()
    for week in range(1, 2 + weeks_missing + weeks_back):
        outcome = "missed" if 2 <= week < 2 + weeks_missing else "attended"
        for offset in GROUP_DAYS:
            patient.session(at(7 * (week - 1) + offset, 18), outcome)
    for day in range(7 * (1 + weeks_missing + weeks_back)):
        patient.checkin(at(day, 21))
    return patient


def test_ten_weeks_of_missed_groups_are_one_missed_often_alert_updated_throughout() -> None:
    weeks = 10  # 70 days of misses: far longer than the 42 days of history the state keeps
    assert 7 * weeks > DEFAULT_TUNING.retention.days
    patient = _disengaging(weeks)
    (alert,) = _alerts(patient, "missed_often", until=at(7 * (1 + weeks), 0))
    misses = 4 * weeks
    # Every miss from the 3rd on is a trigger (3 or more in 14 days): one alert, updated by each.
    assert (alert.state, alert.occurrences) == ("open", misses - 2)
    assert alert.first_seen_at.date() == at(7 + 3, 18).date()  # the 3rd miss, Thu of week 2
    assert alert.last_seen_at.date() == at(7 * weeks + 5, 18).date()  # the last one


def test_the_long_missed_often_episode_clears_when_attendance_returns() -> None:
    weeks = 8
    patient = _disengaging(weeks, weeks_back=4)
    (alert,) = _alerts(patient, "missed_often", until=at(7 * (1 + weeks + 4), 13))
    assert alert.state == "resolved"
    last_miss = at(7 * weeks + 5, 18)  # Sat of the last week of misses
    assert alert.resolution == f"fewer than 3 unexcused misses in any 14 days since Sat {last_miss:%-d %b}"


def test_two_months_of_high_cravings_every_five_days_are_one_craving_alert() -> None:
    patient = Patient()
    patient.enrolled()
    high_days = list(range(3, 66, 5))  # 13 high cravings, each 5 days after the last (gap: 7)
    for day in range(70):
        patient.checkin(at(day, 21), craving=9 if day in high_days else 3)
    (alert,) = _alerts(patient, "craving_high", until=at(70, 0))
    assert (alert.state, alert.occurrences) == ("open", len(high_days))
    # A week after the last high craving, the next check-in ends the episode.
    for day in range(70, 75):
        patient.checkin(at(day, 21), craving=3)
    (alert,) = _alerts(patient, "craving_high", until=at(75, 0))
    assert alert.state == "resolved"
    assert alert.resolution is not None and alert.resolution.startswith(
        "no craving of 8 or more for over 7 days since"
    )


def test_a_new_episode_after_the_gap_is_a_new_alert_even_when_the_last_one_was_long() -> None:
    patient = Patient()
    patient.enrolled()
    first_run = list(range(3, 56, 5))  # 11 high cravings over 53 days
    second_run = [75, 78]  # 19 days after the last one: a new episode
    for day in range(80):
        patient.checkin(at(day, 21), craving=9 if day in first_run + second_run else 3)
    alerts = sorted(_alerts(patient, "craving_high", until=at(80, 0)), key=lambda a: a.first_seen_at)
    assert [(a.state, a.occurrences) for a in alerts] == [("resolved", len(first_run)), ("open", 2)]

"""The time rules, which fire when nothing arrives: silence, the week close, family therapy by day 21.

They run through the absence checks (``due_checks`` lists them, the sweep ``observe``s each once).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.unit.domain.rules.clinic import FIXED_THRESHOLDS, START, T0, Patient, at, brief, course, state_of

from iopcare.domain.absence import AbsenceCheck, due_checks, observe
from iopcare.domain.rules import RulePack
from iopcare.domain.signals import Clearance, Finding, Signal
from iopcare.rulepacks import DEFAULT_PACK

WEEK_1 = f"{START.isoformat()}/week-1"


def _check(events: list, key: str, pack: RulePack = DEFAULT_PACK) -> tuple[AbsenceCheck, list[Finding]]:
    """The due check with this key (or this key then ``:``...), and what observing it finds."""
    state = state_of(events)
    (check,) = [c for c in due_checks(state, pack) if c.key == key or c.key.startswith(key + ":")]
    return check, observe(state, check, pack)


def _week(events: list, week: int) -> list[Finding]:
    return _check(events, f"week_close:{START.isoformat()}:{week}")[1]


def _signal(findings: list[Finding], rule_id: str) -> Signal:
    (signal,) = [f for f in findings if isinstance(f, Signal) and f.rule_id == rule_id]
    return signal


# --- silence ---------------------------------------------------------------------------------------


def test_silence_is_one_alert_that_rises_from_48_to_72_hours_and_clears_at_the_next_checkin() -> None:
    patient = Patient()
    patient.enrolled()
    last = patient.checkin(at(0, 20))
    back = patient.checkin(at(4, 9))
    found = course(patient.events)
    silence = [f for f in found if f.finding.rule_id == "silence"]
    assert brief(silence) == [
        ("signal", "silence", "medium", last.id),
        ("signal", "silence", "high", last.id),
        ("clear", "silence", None, last.id),
    ]
    assert [f.cause for f in silence] == [
        f"checkin_silence:48h:{last.id}",
        f"checkin_silence:72h:{last.id}",
        back.id,
    ]
    high = silence[1].finding
    assert isinstance(high, Signal)
    assert high.title == "No check-in for 72 hours"
    assert high.explanation == "No check-in for 72 hours: the last one was on Mon 2 Mar 20:00."
    assert high.at == last.time + timedelta(hours=72)
    assert high.facts == {
        "hours_without_checkin": 72,
        "threshold_hours": 72,
        "floor_hours": 72,
        "usual_checkin_days": None,  # one check-in: no rhythm yet, the floors alone
        "baseline_days": None,
        "since": last.time.isoformat(),
        "since_what": "last check-in",
    }
    cleared = silence[2].finding
    assert isinstance(cleared, Clearance) and cleared.reason == "checked in on Fri 6 Mar 09:00 after 85 hours"


def test_before_the_first_checkin_silence_counts_from_enrollment() -> None:
    patient = Patient()
    enrolled = patient.enrolled()
    check, findings = _check(patient.events, "checkin_silence:48h")
    assert check == AbsenceCheck(
        T0 + timedelta(hours=48), f"checkin_silence:48h:{enrolled.id}", "checkin_silence"
    )
    signal = _signal(findings, "silence")
    assert signal.explanation == "No check-in since enrollment on Mon 2 Mar 09:00 (48 hours)."


def test_a_checkin_before_the_deadline_supersedes_the_silence_check() -> None:
    patient = Patient()
    patient.enrolled()
    first = patient.checkin(at(0, 20))
    stale = [c for c in due_checks(state_of(patient.events), DEFAULT_PACK) if c.kind == "checkin_silence"]
    patient.checkin(at(1, 20))
    state = state_of(patient.events)
    assert all(observe(state, check, DEFAULT_PACK) == [] for check in stale)
    assert all(first.id not in c.key for c in due_checks(state, DEFAULT_PACK))


# --- the week close --------------------------------------------------------------------------------


def test_a_week_below_plan_raises_a_shortfall_naming_what_fell_short() -> None:
    patient = Patient()
    patient.enrolled(fellowship=0)
    monday = patient.session(at(0, 18))
    tuesday = patient.session(at(1, 18))
    check, findings = _check(patient.events, f"week_close:{START.isoformat()}:1", FIXED_THRESHOLDS)
    assert check.due_at == datetime(2026, 3, 9, 12, tzinfo=UTC)  # Sunday's end plus 12 hours
    assert brief(findings) == [("signal", "weekly_plan_shortfall", "medium", WEEK_1)]
    signal = _signal(findings, "weekly_plan_shortfall")
    assert (
        signal.title
        == "Week 1 below plan: 2 of 4 group sessions, 0 of 1 individual sessions and 6 of 9 hours"
    )
    assert signal.explanation == (
        "Program week 1 (Mon 2 Mar - Sun 8 Mar) closed below the plan: 2 of 4 group sessions, 0 of 1 "
        "individual sessions and 6 of 9 hours. 0 unexcused misses."
    )
    assert signal.event_ids == (tuesday.id, monday.id)
    assert signal.facts["group_sessions"] == 2 and signal.facts["group_sessions_expected"] == 4
    assert signal.facts["hours"] == 6.0 and signal.facts["hours_expected"] == 9.0


def test_a_week_meeting_the_plan_clears_the_shortfalls_before_it() -> None:
    patient = Patient()
    patient.enrolled()
    patient.week_on_plan(2)
    assert brief(_week(patient.events, 2)) == [
        ("clear", "weekly_plan_shortfall", None, None),
        ("clear", "fellowship_shortfall", None, None),
    ]


def test_a_session_the_care_team_excused_is_not_expected_that_week() -> None:
    patient = Patient()
    patient.enrolled(fellowship=0)
    for day in (0, 1, 3):
        patient.session(at(day, 18))
    patient.session(at(5, 10), "missed", excused=True)
    patient.session(at(2, 10), kind="individual")
    tally = [f for f in _week(patient.events, 1) if f.rule_id == "weekly_plan_shortfall"]
    assert brief(tally) == [("clear", "weekly_plan_shortfall", None, None)]


def test_fewer_fellowship_meetings_than_the_plan_is_a_low_alert_at_week_close() -> None:
    patient = Patient()
    patient.enrolled(fellowship=2)
    patient.week_on_plan(1)
    patient.events = [e for e in patient.events if e.data.__class__.__name__ != "FellowshipAttendedData"]
    patient.fellowship(START + timedelta(days=4))
    findings = _week(patient.events, 1)
    assert brief(findings) == [
        ("clear", "weekly_plan_shortfall", None, None),
        ("signal", "fellowship_shortfall", "low", WEEK_1),
    ]
    assert _signal(findings, "fellowship_shortfall").explanation == (
        "Program week 1 (Mon 2 Mar - Sun 8 Mar): 1 outside fellowship meeting recorded; "
        "the plan asks for 2 a week."
    )


def test_frequent_misses_clear_at_the_first_week_close_after_14_quiet_days() -> None:
    patient = Patient()
    patient.enrolled(fellowship=0)
    for day in (0, 1, 3):  # three misses in week 1, then attendance
        patient.session(at(day, 18), "missed")
    for week in (2, 3, 4):
        for day in (0, 1, 3, 5):
            patient.session(at(7 * (week - 1) + day, 18))
        patient.session(at(7 * (week - 1) + 2, 10), kind="individual")
    found = [f for f in course(patient.events, until=at(29, 12)) if f.finding.rule_id == "missed_often"]
    assert brief(found) == [
        ("signal", "missed_often", "high", "ses-03051800-group"),
        ("clear", "missed_often", None, "ses-03051800-group"),
    ]
    assert found[1].cause == f"week_close:{START.isoformat()}:3"  # Thu 5 Mar + 14 days < Mon 23 Mar noon


# --- family therapy by day 21 ----------------------------------------------------------------------


def test_no_family_therapy_booked_by_day_21_is_an_info_alert() -> None:
    patient = Patient()
    enrolled = patient.enrolled()
    check, findings = _check(patient.events, "family_therapy_due")
    assert check.due_at == datetime(2026, 3, 23, tzinfo=UTC)
    assert brief(findings) == [("signal", "family_not_booked", "info", f"program-{START.isoformat()}")]
    assert _signal(findings, "family_not_booked").event_ids == (enrolled.id,)


def test_an_in_house_family_session_counts_as_booked() -> None:
    patient = Patient()
    patient.enrolled()
    patient.session(at(9, 16), "scheduled", kind="family")
    assert _check(patient.events, "family_therapy_due")[1] == []


# --- checks fire once, and not after discharge -----------------------------------------------------


def test_each_check_is_keyed_by_its_episode_and_discharge_cancels_them() -> None:
    patient = Patient()
    enrolled = patient.enrolled(days=28)
    keys = sorted(c.key for c in due_checks(state_of(patient.events), DEFAULT_PACK))
    assert keys == [
        f"checkin_silence:48h:{enrolled.id}",
        f"checkin_silence:72h:{enrolled.id}",
        f"family_therapy_due:{START.isoformat()}",
        *(f"week_close:{START.isoformat()}:{week}" for week in (1, 2, 3, 4)),
    ]
    pending = due_checks(state_of(patient.events), DEFAULT_PACK)
    patient.discharged(at(3, 11))
    state = state_of(patient.events)
    assert due_checks(state, DEFAULT_PACK) == set()
    assert all(observe(state, check, DEFAULT_PACK) == [] for check in pending)


def test_an_ended_run_of_misses_clears_even_when_a_new_run_has_begun() -> None:
    patient = Patient()
    patient.enrolled(fellowship=0)
    for day in (0, 1, 3):  # a run of misses in week 1
        patient.session(at(day, 18), "missed")
    for day in (18, 19, 20):  # a new run: its first trigger (day 20) is 17 days after the last one
        patient.session(at(day, 18), "missed")
    found = [f for f in course(patient.events, until=at(36, 12)) if f.finding.rule_id == "missed_often"]
    kinds = [(kind, episode) for kind, _, _, episode in brief(found)]
    first, second = "ses-03051800-group", "ses-03221800-group"
    assert (("clear", first) in kinds) and (("clear", second) in kinds), kinds
    assert kinds.index(("clear", first)) < kinds.index(("clear", second))
    assert kinds.count(("signal", second)) >= 1 and kinds[0] == ("signal", first)

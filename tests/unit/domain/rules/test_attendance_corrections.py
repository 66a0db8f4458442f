"""Corrections of attendance: a session recorded as an unexcused miss, then as attended (the front desk
fixes the record) or as excused (the care team marks it so). The later decision wins in the state;
these scenarios hold the alerts to it: what the miss raised and no longer holds is resolved, with the
reason; what still holds stays. Each runs the rules and the alert lifecycle over the course, as
``iopcare replay`` and the processor do.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from tests.unit.domain.rules.clinic import Patient, at

from iopcare.contract import InboundEvent, SessionAttended, SessionMissed, new_event
from iopcare.domain.alerts import Alert
from iopcare.domain.backtest import run_backtest
from iopcare.domain.engagement import DEFAULT_TUNING
from iopcare.rulepacks import DEFAULT_PACK

MISSES_RULES = ("missed_in_a_row", "missed_often", "early_disengagement")
PROGRAM = "program-2026-03-02"


def _enrolled() -> Patient:
    patient = Patient()
    patient.enrolled()
    return patient


def _first_week_attended(patient: Patient) -> None:
    """The first five sessions attended (Mon, Tue, Wed individual, Thu, Sat), so later misses are not
    early disengagement."""
    for day in (0, 1, 3, 5):
        patient.session(at(day, 18 if day != 5 else 10))
    patient.session(at(2, 10), kind="individual")


def _corrected(patient: Patient, missed: InboundEvent, when: datetime, to: str = "attended") -> InboundEvent:
    """The record of the session ``missed`` was about, corrected at ``when`` to attended or excused."""
    assert isinstance(missed, SessionMissed)
    data = {
        "session_id": missed.data.session_id,
        "kind": missed.data.kind,
        "starts_at": missed.data.starts_at.isoformat(),
        "duration_minutes": missed.data.duration_minutes,
    }
    if to == "attended":
        event = new_event(
            SessionAttended,
            subject=patient.patient_id,
            source="ehr.clinic-a",
            data=data,
            time=when,
            id=f"{patient.patient_id}-fix{len(patient.events)}",
        )
    else:
        event = new_event(
            SessionMissed,
            subject=patient.patient_id,
            source="ehr.clinic-a",
            data={**data, "excused": True, "reason_code": "illness"},
            time=when,
            id=f"{patient.patient_id}-fix{len(patient.events)}",
        )
    patient.events.append(event)
    return event


def _alerts(arrived: list[InboundEvent]) -> dict[str, Alert]:
    """The misses rules' alerts after the events arrived in this order, by ``rule:episode``."""
    result = run_backtest(arrived, DEFAULT_PACK)
    return {
        f"{a.rule_id}:{a.dedup_key.rsplit(':', 1)[1]}": a
        for a in result.alerts.values()
        if a.rule_id in MISSES_RULES
    }


def _in_time_order(patient: Patient) -> list[InboundEvent]:
    return sorted(patient.events, key=lambda e: (e.time, e.id))


def _states(alerts: dict[str, Alert]) -> dict[str, tuple[str, str | None]]:
    return {key: (a.state, a.resolution) for key, a in alerts.items()}


def _live(alerts: dict[str, Alert]) -> list[str]:
    """The alerts a counselor still has, by rule (an alert continued under a name the rule has moved
    on from keeps its first name: which one depends on what arrived first)."""
    return sorted(alert.rule_id for alert in alerts.values() if alert.live)


# --- the condition no longer holds: the alert resolves, with the reason ---------------------------


def _two_misses_in_a_row() -> tuple[Patient, InboundEvent, InboundEvent]:
    patient = _enrolled()
    _first_week_attended(patient)
    patient.session(at(7, 18))  # Mon 9 Mar attended
    first = patient.session(at(8, 18), "missed")  # Tue 10 Mar
    second = patient.session(at(10, 18), "missed")  # Thu 12 Mar
    return patient, first, second


def test_two_misses_in_a_row_then_the_second_corrected_to_attended_resolves_the_alert() -> None:
    patient, first, second = _two_misses_in_a_row()
    before = _alerts(_in_time_order(patient))
    assert _states(before) == {f"missed_in_a_row:{first.data.session_id}": ("open", None)}
    _corrected(patient, second, at(11, 9))  # Fri 13 Mar: the front desk fixes Thursday's record
    assert _states(_alerts(_in_time_order(patient))) == {
        f"missed_in_a_row:{first.data.session_id}": (
            "resolved",
            "the group session on Thu 12 Mar is now recorded as attended: "
            "no longer 2 unexcused misses in a row",
        )
    }


def test_a_miss_later_marked_excused_leaves_its_run_open_until_the_next_attended_session() -> None:
    """An excused miss neither counts nor breaks a run: the run named after Tuesday can still grow
    with the next miss, under the same name, and a resolved alert never reopens. So its alert
    waits for the run's end, the next attended session, to resolve."""
    patient, first, second = _two_misses_in_a_row()
    key = f"missed_in_a_row:{first.data.session_id}"
    _corrected(patient, second, at(11, 9), to="excused")
    assert _states(_alerts(_in_time_order(patient))) == {key: ("open", None)}
    patient.session(at(12, 10))  # Sat 14 Mar attended
    assert _states(_alerts(_in_time_order(patient))) == {
        key: (
            "resolved",
            "the group session on Sat 14 Mar is now recorded as attended: "
            "no longer 2 unexcused misses in a row",
        )
    }


def test_after_an_excused_correction_the_next_miss_makes_the_run_hold_again() -> None:
    patient, first, second = _two_misses_in_a_row()
    _corrected(patient, second, at(11, 9), to="excused")
    patient.session(at(12, 10), "missed")  # Sat 14 Mar
    (alert,) = _alerts(_in_time_order(patient)).values()
    assert alert.dedup_key.endswith(first.data.session_id) and alert.state == "open"
    assert alert.explanation == (
        "2 unexcused missed group sessions in a row: Tue 10 Mar and Sat 14 Mar. "
        "The last session attended was on Mon 9 Mar (group)."
    )


def test_correcting_the_first_miss_of_two_resolves_the_alert_named_after_it() -> None:
    patient, first, _ = _two_misses_in_a_row()
    _corrected(patient, first, at(11, 9))
    assert _states(_alerts(_in_time_order(patient))) == {
        f"missed_in_a_row:{first.data.session_id}": (
            "resolved",
            "the group session on Tue 10 Mar is now recorded as attended: "
            "no longer 2 unexcused misses in a row",
        )
    }


def test_a_run_of_three_with_the_middle_one_corrected_is_two_runs_of_one_and_resolves() -> None:
    patient = _enrolled()
    _first_week_attended(patient)
    patient.session(at(7, 18))  # Mon 9 Mar attended
    first = patient.session(at(8, 18), "missed")  # Tue 10 Mar
    middle = patient.session(at(10, 18), "missed")  # Thu 12 Mar
    third = patient.session(at(12, 10), "missed")  # Sat 14 Mar
    before = _alerts(_in_time_order(patient))
    assert {key: a.title for key, a in before.items()} == {
        f"missed_in_a_row:{first.data.session_id}": "3 unexcused missed group sessions in a row",
        f"missed_often:{third.data.session_id}": "3 unexcused missed group sessions in 14 days",
    }
    _corrected(patient, middle, at(13, 9))  # Sun 15 Mar
    # An attended session ends a run: the misses on either side are runs of one, and two misses in
    # 14 days are fewer than 3.
    assert _states(_alerts(_in_time_order(patient))) == {
        f"missed_in_a_row:{first.data.session_id}": (
            "resolved",
            "the group session on Thu 12 Mar is now recorded as attended: "
            "no longer 2 unexcused misses in a row",
        ),
        f"missed_often:{third.data.session_id}": (
            "resolved",
            "the group session on Thu 12 Mar is now recorded as attended: "
            "fewer than 3 unexcused misses in 14 days",
        ),
    }


def _early_miss() -> tuple[Patient, InboundEvent]:
    """The second of the program's sessions missed; the first, third and fourth attended."""
    patient = _enrolled()
    patient.session(at(0, 18))  # Mon 2 Mar attended
    missed = patient.session(at(1, 18), "missed")  # Tue 3 Mar
    patient.session(at(2, 10), kind="individual")  # Wed 4 Mar attended
    patient.session(at(3, 18))  # Thu 5 Mar attended
    return patient, missed


def test_a_miss_in_the_first_five_sessions_corrected_resolves_early_disengagement() -> None:
    patient, missed = _early_miss()
    patient.session(at(5, 10))  # Sat 7 Mar: the first five sessions are all recorded
    assert _states(_alerts(_in_time_order(patient))) == {f"early_disengagement:{PROGRAM}": ("open", None)}
    _corrected(patient, missed, at(5, 15))
    assert _states(_alerts(_in_time_order(patient))) == {
        f"early_disengagement:{PROGRAM}": (
            "resolved",
            "the group session on Tue 3 Mar is now recorded as attended: "
            "no unexcused miss among the first 5 sessions",
        )
    }


def test_an_early_miss_corrected_before_the_fifth_session_resolves_when_the_fifth_is_recorded() -> None:
    """Until the first five sessions are all recorded, another of them can still be missed, and the
    program's episode would come back under the same name: a resolved alert never reopens."""
    patient, missed = _early_miss()
    _corrected(patient, missed, at(4, 9))  # Fri 6 Mar, before Saturday's session
    assert _states(_alerts(_in_time_order(patient))) == {f"early_disengagement:{PROGRAM}": ("open", None)}
    patient.session(at(5, 10))  # Sat 7 Mar attended
    assert _states(_alerts(_in_time_order(patient))) == {
        f"early_disengagement:{PROGRAM}": (
            "resolved",
            "the group session on Sat 7 Mar is now recorded as attended: "
            "no unexcused miss among the first 5 sessions",
        )
    }


def test_an_early_miss_corrected_then_another_early_miss_keeps_early_disengagement() -> None:
    patient, missed = _early_miss()
    _corrected(patient, missed, at(4, 9))
    fifth = patient.session(at(5, 10), "missed")  # Sat 7 Mar
    (alert,) = _alerts(_in_time_order(patient)).values()
    assert (alert.state, alert.facts["early_misses"]) == ("open", 1)
    assert alert.explanation.startswith("Missed 1 unexcused group session (Sat 7 Mar)")
    assert fifth.id in alert.event_ids


def _three_misses_in_14_days() -> tuple[Patient, list[InboundEvent]]:
    """Misses on Mon 9, Thu 12 and Mon 16 Mar, attended sessions between: not in a row."""
    patient = _enrolled()
    _first_week_attended(patient)
    misses = [patient.session(at(7, 18), "missed")]
    patient.session(at(8, 18))
    misses.append(patient.session(at(10, 18), "missed"))
    patient.session(at(12, 10))
    misses.append(patient.session(at(14, 18), "missed"))
    return patient, misses


@pytest.mark.parametrize("which", [0, 1, 2])
def test_three_misses_in_14_days_with_one_corrected_resolve_missed_often(which: int) -> None:
    patient, misses = _three_misses_in_14_days()
    third = misses[2].data.session_id  # the episode is named after its first qualifying miss
    assert _states(_alerts(_in_time_order(patient))) == {f"missed_often:{third}": ("open", None)}
    _corrected(patient, misses[which], at(15, 9))
    when = ("Mon 9 Mar", "Thu 12 Mar", "Mon 16 Mar")[which]
    assert _states(_alerts(_in_time_order(patient))) == {
        f"missed_often:{third}": (
            "resolved",
            f"the group session on {when} is now recorded as attended: "
            "fewer than 3 unexcused misses in 14 days",
        )
    }


# --- the condition still holds: the alert stays ----------------------------------------------------


def test_two_early_misses_with_one_corrected_keep_early_disengagement_restated() -> None:
    patient = _enrolled()
    first = patient.session(at(0, 18), "missed")  # Mon 2 Mar
    patient.session(at(1, 18))
    second = patient.session(at(2, 10), "missed", kind="individual")  # Wed 4 Mar
    patient.session(at(3, 18))
    fix = _corrected(patient, second, at(4, 9))  # after Thursday's attendance: a late record
    (alert,) = _alerts(_in_time_order(patient)).values()
    assert alert.dedup_key.endswith(PROGRAM)
    assert (alert.state, alert.resolution) == ("open", None)
    assert alert.facts["early_misses"] == 1
    assert alert.explanation.startswith(
        "Missed 1 unexcused group session (Mon 2 Mar) among the first 5 sessions of the program"
    )
    assert alert.explanation.endswith(
        "Updated: the individual session on Wed 4 Mar is now recorded as attended."
    )
    # The lifecycle keeps every evidence id an alert was given: the corrected miss stays listed,
    # next to the correction.
    assert alert.event_ids[-1] == fix.id and {first.id, second.id} <= set(alert.event_ids)


def test_a_run_of_four_with_a_middle_miss_excused_keeps_its_alert_with_three_in_a_row() -> None:
    patient = _enrolled()
    _first_week_attended(patient)
    patient.session(at(7, 18))  # Mon 9 Mar attended
    runs = [patient.session(at(day, 18), "missed") for day in (8, 10, 11, 12)]  # Tue 10 - Sat 14 Mar
    before = _alerts(_in_time_order(patient))
    first, third, fourth = runs[0].data.session_id, runs[2].data.session_id, runs[3].data.session_id
    assert before[f"missed_in_a_row:{first}"].title == "4 unexcused missed group sessions in a row"
    assert before[f"missed_often:{third}"].title == "4 unexcused missed group sessions in 14 days"
    _corrected(patient, runs[1], at(13, 9), to="excused")  # Thu 12 Mar excused, on Sun 15 Mar
    after = _alerts(_in_time_order(patient))
    in_a_row = after[f"missed_in_a_row:{first}"]
    assert (in_a_row.state, in_a_row.title) == ("open", "3 unexcused missed group sessions in a row")
    assert in_a_row.explanation == (
        "3 unexcused missed group sessions in a row: Tue 10 Mar, Fri 13 Mar and Sat 14 Mar. "
        "The last session attended was on Mon 9 Mar (group). "
        "Updated: the group session on Thu 12 Mar is now recorded as excused."
    )
    # Missed often is named after its first qualifying miss (the 3rd in 14 days): without Thursday,
    # that is Saturday's. The rule's name for the episode moves on; the lifecycle continues its alert.
    assert _states(after) == {
        f"missed_in_a_row:{first}": ("open", None),
        f"missed_often:{third}": ("open", None),
    }
    often = after[f"missed_often:{third}"]
    assert often.title == "3 unexcused missed group sessions in 14 days"
    assert often.explanation == (
        "3 unexcused missed group sessions in the 14 days up to Sat 14 Mar: Tue 10 Mar, Fri 13 Mar and "
        "Sat 14 Mar (the threshold is 3). Updated: the group session on Thu 12 Mar is now recorded as "
        "excused."
    )
    assert not any(key.endswith(fourth) for key in after)


def test_a_run_of_four_with_the_second_corrected_to_attended_leaves_a_run_of_two_as_its_own_alert() -> None:
    patient = _enrolled()
    _first_week_attended(patient)
    patient.session(at(7, 18))  # Mon 9 Mar attended
    runs = [patient.session(at(day, 18), "missed") for day in (8, 10, 11, 12)]  # Tue 10 - Sat 14 Mar
    _corrected(patient, runs[1], at(13, 9))  # Thu 12 Mar attended after all
    after = _alerts(_in_time_order(patient))
    first, third = runs[0].data.session_id, runs[2].data.session_id
    # An attended session ends a run: the run named after Tuesday is over; Friday and Saturday are
    # still 2 in a row, a run of its own.
    assert _states(after) == {
        f"missed_in_a_row:{first}": (
            "resolved",
            "the group session on Thu 12 Mar is now recorded as attended: "
            "the run of misses now begins on Fri 13 Mar",
        ),
        f"missed_in_a_row:{third}": ("open", None),
        f"missed_often:{third}": ("open", None),  # renamed after Saturday: continued (see above)
    }
    assert after[f"missed_often:{third}"].facts["misses"] == 3
    assert after[f"missed_in_a_row:{third}"].explanation == (
        "2 unexcused missed group sessions in a row: Fri 13 Mar and Sat 14 Mar. "
        "The last session attended was on Thu 12 Mar (group). "
        "Updated: the group session on Thu 12 Mar is now recorded as attended."
    )


def test_four_misses_in_14_days_with_the_last_corrected_keep_missed_often_restated() -> None:
    patient, misses = _three_misses_in_14_days()
    patient.session(at(15, 18))
    misses.append(patient.session(at(17, 18), "missed"))  # Thu 19 Mar
    patient.session(at(19, 10))  # Sat 21 Mar attended
    third = misses[2].data.session_id
    assert _alerts(_in_time_order(patient))[f"missed_often:{third}"].facts["misses"] == 4
    _corrected(patient, misses[3], at(19, 15))
    (alert,) = _alerts(_in_time_order(patient)).values()
    assert (alert.rule_id, alert.state) == ("missed_often", "open")
    assert alert.dedup_key.endswith(third)
    assert alert.explanation == (
        "3 unexcused missed group sessions in the 14 days up to Mon 16 Mar: Mon 9 Mar, Thu 12 Mar and "
        "Mon 16 Mar (the threshold is 3). Updated: the group session on Thu 19 Mar is now recorded as "
        "attended."
    )


def test_a_correction_of_the_latest_session_leaves_an_alert_that_still_holds_as_it_was() -> None:
    """The record of the latest session cannot be told from a correction of it: the alert that still
    holds is not re-stated then (each attendance after a miss would count as another occurrence)."""
    patient = _enrolled()
    patient.session(at(0, 18), "missed")
    patient.session(at(1, 18))
    second = patient.session(at(2, 10), "missed", kind="individual")
    before = _alerts(_in_time_order(patient))[f"early_disengagement:{PROGRAM}"]
    _corrected(patient, second, at(2, 12))  # before any later session has an outcome
    after = _alerts(_in_time_order(patient))[f"early_disengagement:{PROGRAM}"]
    assert after == before and after.facts["early_misses"] == 2


def test_the_first_miss_of_a_run_of_four_excused_moves_the_run_to_its_new_first_miss() -> None:
    patient = _enrolled()
    _first_week_attended(patient)
    patient.session(at(7, 18))  # Mon 9 Mar attended
    runs = [patient.session(at(day, 18), "missed") for day in (8, 10, 11, 12)]  # Tue 10 - Sat 14 Mar
    _corrected(patient, runs[0], at(13, 9), to="excused")
    first, second = runs[0].data.session_id, runs[1].data.session_id
    after = _alerts(_in_time_order(patient))
    assert _states({k: a for k, a in after.items() if a.rule_id == "missed_in_a_row"}) == {
        f"missed_in_a_row:{first}": (
            "resolved",
            "the group session on Tue 10 Mar is now recorded as excused: "
            "the run of misses now begins on Thu 12 Mar",
        ),
        f"missed_in_a_row:{second}": ("open", None),
    }
    assert after[f"missed_in_a_row:{second}"].title == "3 unexcused missed group sessions in a row"


def _recorded_missed(patient: Patient, attended: InboundEvent, when: datetime) -> InboundEvent:
    """The attended group session ``attended`` recorded again, later, as an unexcused miss."""
    data = attended.data
    event = new_event(
        SessionMissed,
        subject=patient.patient_id,
        source="ehr.clinic-a",
        data={
            "session_id": data.session_id,
            "kind": "group",
            "starts_at": data.starts_at.isoformat(),
            "duration_minutes": data.duration_minutes,
            "excused": False,
        },
        time=when,
        id=f"{patient.patient_id}-missed-{data.session_id}",
    )
    patient.events.append(event)
    return event


def test_not_handled_an_attendance_corrected_to_a_miss_stays_silent_for_the_rest_of_its_run() -> None:
    """The reverse correction: the run that the attendance ended was resolved, and its name is
    taken by the longer run the miss makes (a resolved alert never reopens). Documented in
    docs/rules.md (Corrections of attendance)."""
    patient = _enrolled()
    _first_week_attended(patient)
    patient.session(at(7, 18))
    first = patient.session(at(8, 18), "missed")
    patient.session(at(10, 18), "missed")
    back = patient.session(at(11, 18))  # Fri 13 Mar attended: the run of 2 ended
    _recorded_missed(patient, back, at(12, 9))
    patient.session(at(12, 18), "missed")  # Sat 14 Mar: 4 in a row, and no live alert says so
    alerts = _alerts(_in_time_order(patient))
    assert {k: a.state for k, a in alerts.items() if a.rule_id == "missed_in_a_row"} == {
        f"missed_in_a_row:{first.data.session_id}": "resolved"
    }


# --- arrival order ---------------------------------------------------------------------------------


def test_an_attended_record_arriving_before_the_miss_it_supersedes_raises_nothing() -> None:
    patient, _, second = _two_misses_in_a_row()
    fix = _corrected(patient, second, at(11, 9))
    in_order = _in_time_order(patient)
    # The correction has the later decision time, so it wins whatever the arrival order: the miss
    # arrives overridden and raises nothing.
    correction_first = [e for e in in_order if e is not second]
    correction_first.insert(correction_first.index(fix) + 1, second)
    assert correction_first.index(fix) < correction_first.index(second)
    assert _alerts(correction_first) == {}
    assert _live(_alerts(in_order)) == []


def test_a_miss_recorded_after_an_attendance_with_a_later_decision_time_is_a_miss() -> None:
    """The other way round: attended first, then a miss decided later (the record corrected to
    missed). The later decision wins: a miss."""
    patient = _enrolled()
    _first_week_attended(patient)
    patient.session(at(7, 18))
    first = patient.session(at(8, 18), "missed")
    attended = patient.session(at(10, 18))
    _recorded_missed(patient, attended, at(11, 9))
    assert _states(_alerts(_in_time_order(patient))) == {
        f"missed_in_a_row:{first.data.session_id}": ("open", None)
    }


def _scenarios() -> list[tuple[str, Patient, InboundEvent]]:
    """Every course above with one correction, and that correction; each goes on until its episodes
    can no longer grow (a run waiting for its end, early sessions all recorded)."""
    scenarios = []
    patient, _, second = _two_misses_in_a_row()
    scenarios.append(("second of two", patient, _corrected(patient, second, at(11, 9))))
    patient, first, _ = _two_misses_in_a_row()
    scenarios.append(("first of two", patient, _corrected(patient, first, at(11, 9))))
    patient, _, second = _two_misses_in_a_row()
    scenarios.append(("excused", patient, _corrected(patient, second, at(11, 9), to="excused")))
    patient.session(at(12, 10))
    for which in range(3):
        patient, misses = _three_misses_in_14_days()
        scenarios.append((f"often {which}", patient, _corrected(patient, misses[which], at(15, 9))))
    for index, to in ((1, "excused"), (1, "attended"), (0, "attended"), (0, "excused"), (3, "excused")):
        patient = _enrolled()
        _first_week_attended(patient)
        patient.session(at(7, 18))
        runs = [patient.session(at(day, 18), "missed") for day in (8, 10, 11, 12)]
        fix = _corrected(patient, runs[index], at(13, 9), to)
        scenarios.append((f"run of four {index} {to}", patient, fix))
    patient, missed = _early_miss()
    scenarios.append(("early", patient, _corrected(patient, missed, at(4, 9))))
    patient.session(at(5, 10))
    patient = _enrolled()
    patient.session(at(0, 18), "missed")
    patient.session(at(1, 18))
    second = patient.session(at(2, 10), "missed", kind="individual")
    patient.session(at(3, 18))
    scenarios.append(("early, one of two", patient, _corrected(patient, second, at(4, 9))))
    return scenarios


@pytest.mark.parametrize("name", [name for name, _, _ in _scenarios()])
def test_a_correction_arriving_at_any_point_within_the_lateness_window_leaves_the_same_live_alerts(
    name: str,
) -> None:
    """The correction moved to every earlier arrival slot that keeps each event within the lateness
    window of the latest one before it (where the fold guarantees the same state): the counselor
    ends up with the same live alerts. (Their words may differ: an alert that still holds is
    re-stated only when the correction was recorded after a later session's outcome.)"""
    ((_, patient, fix),) = [s for s in _scenarios() if s[0] == name]
    in_order = _in_time_order(patient)
    expected = _live(_alerts(in_order))
    others = [e for e in in_order if e is not fix]
    tried = 0
    for slot in range(len(others)):
        arrived = [*others[:slot], fix, *others[slot:]]
        if any(e.time < fix.time - DEFAULT_TUNING.lateness for e in others[slot:]):
            continue
        tried += 1
        assert _live(_alerts(arrived)) == expected, f"correction arriving at {slot}"
    assert tried >= 3

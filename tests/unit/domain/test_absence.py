"""Absence checks through the ``AbsencePolicy`` path the store still uses (transitional; the rule pack's
time rules are tested in ``tests/unit/domain/rules/test_time_rules.py``)."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from iopcare.contract import (
    CheckInSubmitted,
    FellowshipAttended,
    InboundEvent,
    PatientDischarged,
    PatientEnrolled,
    SessionAttended,
    new_event,
)
from iopcare.contract.examples import EXAMPLE_DATA
from iopcare.domain.absence import DEFAULT_ABSENCE_POLICY as POLICY
from iopcare.domain.absence import AbsenceCheck, due_checks, observe
from iopcare.domain.intake import replay

PATIENT = "pt-absence01"
START = date(2026, 3, 2)  # a Monday
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


def _event(cls: type, at: datetime, data: dict) -> InboundEvent:
    return new_event(cls, subject=PATIENT, source="ehr.clinic-a", data=data, time=at, id=f"ab-{next(_ids)}")


def enrolled() -> InboundEvent:
    data = dict(EXAMPLE_DATA["iop.patient.enrolled"], program_start=START.isoformat(), planned_length_days=28)
    return _event(PatientEnrolled, T0, data)


def checkin(at: datetime) -> InboundEvent:
    return _event(
        CheckInSubmitted,
        at,
        {"craving": 3, "mood": 6, "sleep_hours": 7, "substance_use_reported": False, "safety_concern": False},
    )


def attended(at: datetime, kind: str = "group", minutes: int = 180) -> InboundEvent:
    return _event(
        SessionAttended,
        at,
        {
            "session_id": f"s-{next(_ids)}",
            "kind": kind,
            "starts_at": at.isoformat(),
            "duration_minutes": minutes,
        },
    )


def _silence(checks: set[AbsenceCheck]) -> list[AbsenceCheck]:
    return sorted(c for c in checks if c.kind == "checkin_silence")


def test_silence_counts_from_enrollment_until_the_first_checkin() -> None:
    state = replay([enrolled()])[PATIENT]
    assert [c.due_at for c in _silence(due_checks(state, POLICY))] == [
        T0 + timedelta(hours=48),
        T0 + timedelta(hours=72),
    ]


def test_a_new_checkin_replaces_the_silence_checks() -> None:
    events = [enrolled(), checkin(T0 + timedelta(hours=20))]
    before = due_checks(replay(events[:1])[PATIENT], POLICY)
    state = replay(events)[PATIENT]
    after = due_checks(state, POLICY)
    assert [c.due_at for c in _silence(after)] == [T0 + timedelta(hours=68), T0 + timedelta(hours=92)]
    # The superseded checks, if swept anyway, find nothing: the patient did check in.
    for stale in _silence(before):
        assert observe(state, stale, POLICY) is None


def test_a_due_silence_check_signals_with_the_hours_and_the_last_checkin() -> None:
    last = checkin(T0 + timedelta(hours=20))
    state = replay([enrolled(), last])[PATIENT]
    check = _silence(due_checks(state, POLICY))[1]
    signal = observe(state, check, POLICY)
    assert signal is not None and signal.kind == "checkin_silence"
    assert signal.facts["hours_without_checkin"] == 72
    assert signal.facts["since_what"] == "last check-in"
    assert signal.evidence == (last.id,)


def test_week_closes_are_scheduled_for_every_program_week_after_the_grace() -> None:
    state = replay([enrolled()])[PATIENT]
    closes = sorted(c for c in due_checks(state, POLICY) if c.kind == "week_close")
    assert [c.due_at for c in closes] == [
        datetime(2026, 3, 9, 12, tzinfo=UTC) + timedelta(days=7 * w) for w in range(4)
    ]


def test_a_week_below_plan_signals_what_fell_short_and_a_full_week_signals_nothing() -> None:
    monday = datetime(2026, 3, 2, 18, tzinfo=UTC)
    short_week = [enrolled(), attended(monday), attended(monday + timedelta(days=1))]
    state = replay(short_week)[PATIENT]
    week_one = min(c for c in due_checks(state, POLICY) if c.kind == "week_close")
    signal = observe(state, week_one, POLICY)
    assert signal is not None and signal.kind == "weekly_plan_shortfall"
    assert signal.facts["group_sessions"] == 2 and signal.facts["group_sessions_planned"] == 4
    assert signal.facts["hours"] == 6.0 and signal.facts["hours_planned"] == 9.0
    assert set(signal.evidence) == {e.id for e in short_week[1:]}

    full_week = [
        enrolled(),
        *(attended(monday + timedelta(days=d)) for d in range(4)),
        attended(monday + timedelta(days=4, hours=-2), "individual", 50),
        *(
            _event(
                FellowshipAttended,
                monday + timedelta(days=d),
                {"fellowship": "NA", "attended_on": f"2026-03-0{2 + d}", "verified": True},
            )
            for d in (1, 3)
        ),
    ]
    state = replay(full_week)[PATIENT]
    week_one = min(c for c in due_checks(state, POLICY) if c.kind == "week_close")
    assert observe(state, week_one, POLICY) is None


def test_a_discharged_patient_expects_no_checks_and_pending_ones_find_nothing() -> None:
    events = [enrolled()]
    pending = due_checks(replay(events)[PATIENT], POLICY)
    events.append(
        _event(
            PatientDischarged,
            T0 + timedelta(days=3),
            {"discharged_on": "2026-03-05", "disposition": "completed"},
        )
    )
    state = replay(events)[PATIENT]
    assert due_checks(state, POLICY) == set()
    assert all(observe(state, check, POLICY) is None for check in pending)

"""Absence checks: when they fall due, and that a superseded or cancelled one finds nothing. What the
time rules find when a check is real is tested in ``tests/unit/domain/rules/test_time_rules.py``."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from iopcare.contract import (
    CheckInSubmitted,
    InboundEvent,
    PatientDischarged,
    PatientEnrolled,
    new_event,
)
from iopcare.contract.examples import EXAMPLE_DATA
from iopcare.domain.absence import AbsenceCheck, due_checks, observe
from iopcare.domain.intake import replay
from iopcare.rulepacks import DEFAULT_PACK

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


def _silence(checks: set[AbsenceCheck]) -> list[AbsenceCheck]:
    return sorted(c for c in checks if c.kind == "checkin_silence")


def test_silence_counts_from_enrollment_until_the_first_checkin() -> None:
    state = replay([enrolled()])[PATIENT]
    assert [c.due_at for c in _silence(due_checks(state, DEFAULT_PACK))] == [
        T0 + timedelta(hours=48),
        T0 + timedelta(hours=72),
    ]


def test_a_new_checkin_replaces_the_silence_checks() -> None:
    events = [enrolled(), checkin(T0 + timedelta(hours=20))]
    before = due_checks(replay(events[:1])[PATIENT], DEFAULT_PACK)
    state = replay(events)[PATIENT]
    after = due_checks(state, DEFAULT_PACK)
    assert [c.due_at for c in _silence(after)] == [T0 + timedelta(hours=68), T0 + timedelta(hours=92)]
    # The superseded checks, if swept anyway, find nothing: the patient did check in.
    for stale in _silence(before):
        assert observe(state, stale, DEFAULT_PACK) == []


def test_week_closes_are_scheduled_for_every_program_week_after_the_grace() -> None:
    state = replay([enrolled()])[PATIENT]
    closes = sorted(c for c in due_checks(state, DEFAULT_PACK) if c.kind == "week_close")
    assert [c.due_at for c in closes] == [
        datetime(2026, 3, 9, 12, tzinfo=UTC) + timedelta(days=7 * w) for w in range(4)
    ]


def test_a_discharged_patient_expects_no_checks_and_pending_ones_find_nothing() -> None:
    events = [enrolled()]
    pending = due_checks(replay(events)[PATIENT], DEFAULT_PACK)
    events.append(
        _event(
            PatientDischarged,
            T0 + timedelta(days=3),
            {"discharged_on": "2026-03-05", "disposition": "completed"},
        )
    )
    state = replay(events)[PATIENT]
    assert due_checks(state, DEFAULT_PACK) == set()
    assert all(observe(state, check, DEFAULT_PACK) == [] for check in pending)

"""The Part 2 consent gate: third-party reports apply only under an active consent covering them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from iopcare.contract import (
    CheckInSubmitted,
    ConsentGranted,
    ConsentRevoked,
    FamilyTherapyBooked,
    InboundEvent,
    SoberLivingReported,
    new_event,
)
from iopcare.domain.engagement import PatientState
from iopcare.domain.intake import Held, consent_gate, replay, take_in

PATIENT = "pt-consent01"
HOUSE = "house-maple"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


def _event(cls: type, at: datetime, data: dict, source: str = "ehr.clinic-a") -> InboundEvent:
    return new_event(cls, subject=PATIENT, source=source, data=data, time=at, id=f"ev-{next(_ids)}")


def grant(at: datetime, scope: tuple[str, ...] = ("attendance", "housing", "toxicology"), days: int = 365):
    return _event(
        ConsentGranted,
        at,
        {
            "recipient_kind": "sober_living_house",
            "recipient_id": HOUSE,
            "scope": list(scope),
            "expires_at": (at + timedelta(days=days)).isoformat(),
            "consent_form_id": "cf-1",
        },
    )


def revoke(at: datetime, scope: tuple[str, ...] = ("attendance", "housing", "toxicology")):
    return _event(
        ConsentRevoked,
        at,
        {"recipient_kind": "sober_living_house", "recipient_id": HOUSE, "scope": list(scope)},
    )


def house(at: datetime, kind: str = "curfew_violation"):
    return _event(
        SoberLivingReported,
        at,
        {"house_id": HOUSE, "kind": kind, "observed_at": at.isoformat()},
        source=f"house.{HOUSE}",
    )


def _state(*events: InboundEvent) -> PatientState:
    return replay(events)[PATIENT]


def test_a_house_report_under_active_consent_is_applied() -> None:
    state = _state(grant(T0), house(T0 + timedelta(days=2)))
    assert [i.kind for i in state.house_incidents] == ["curfew_violation"]


def test_a_house_report_without_any_consent_is_held_with_the_reason() -> None:
    quarantine: dict[str, list[Held]] = {}
    state = replay([house(T0)], quarantine=quarantine)[PATIENT]
    assert state.house_incidents == []
    assert state.events_applied == 0
    [held] = quarantine[PATIENT]
    assert (held.reason, held.party.kind, held.party.id) == ("no_consent", "sober_living_house", HOUSE)
    assert held.hold_until == T0 + timedelta(days=14)


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ((grant(T0, days=30), house(T0 + timedelta(days=31))), "consent_expired"),
        ((grant(T0), revoke(T0 + timedelta(days=1)), house(T0 + timedelta(days=2))), "consent_revoked"),
        ((grant(T0, scope=("attendance",)), house(T0 + timedelta(days=1))), "outside_scope"),
        # A positive test at the house is toxicology information: a housing-only consent does not cover it.
        ((grant(T0, scope=("housing",)), house(T0 + timedelta(days=1), "positive_test")), "outside_scope"),
    ],
    ids=["expired", "revoked", "outside-scope", "positive-test-needs-toxicology"],
)
def test_a_report_the_consent_does_not_cover_is_held_and_says_why(
    events: tuple[InboundEvent, ...], reason: str
) -> None:
    quarantine: dict[str, list[Held]] = {}
    state = replay(events, quarantine=quarantine)[PATIENT]
    assert state.house_incidents == []
    assert [h.reason for h in quarantine[PATIENT]] == [reason]


def test_a_grant_within_the_hold_window_releases_and_applies_the_held_report() -> None:
    report = house(T0, "positive_test")
    state = PatientState(patient_id=PATIENT)
    first = take_in(state, report)
    assert first.held is not None and first.applied == []
    second = take_in(state, grant(T0 + timedelta(days=3)), [first.held])
    assert second.released == [first.held]
    assert [e.id for e in second.applied][1:] == [report.id]
    assert [u.kind for u in state.use_signals] == ["house_positive"]


def test_a_grant_after_the_hold_window_releases_nothing() -> None:
    quarantine: dict[str, list[Held]] = {}
    state = replay([house(T0), grant(T0 + timedelta(days=15))], quarantine=quarantine)[PATIENT]
    assert state.house_incidents == []
    assert len(quarantine[PATIENT]) == 1


def test_grant_and_report_give_the_same_state_in_either_arrival_order() -> None:
    report, consent = house(T0 + timedelta(hours=2)), grant(T0 + timedelta(days=2))
    assert _state(report, consent) == _state(consent, report)
    assert len(_state(consent, report).house_incidents) == 1


def test_a_revocation_does_not_retract_a_report_made_while_consent_was_active() -> None:
    state = _state(grant(T0), house(T0 + timedelta(days=1)), revoke(T0 + timedelta(days=2)))
    assert len(state.house_incidents) == 1


def test_a_partial_revocation_keeps_the_rest_of_the_scope() -> None:
    events = (grant(T0), revoke(T0 + timedelta(days=1), scope=("toxicology",)), house(T0 + timedelta(days=2)))
    assert len(_state(*events).house_incidents) == 1
    positive = house(T0 + timedelta(days=3), "positive_test")
    state = _state(*events)
    held = consent_gate(state, positive)
    assert held is not None and held.reason == "outside_scope"


def test_family_therapy_needs_the_providers_own_consent_not_the_houses() -> None:
    booking = _event(
        FamilyTherapyBooked,
        T0 + timedelta(days=1),
        {"booking_id": "ft-1", "starts_at": (T0 + timedelta(days=5)).isoformat(), "provider_id": "prov-1"},
        source="family.prov-1",
    )
    state = _state(grant(T0))
    held = consent_gate(state, booking)
    assert held is not None and (held.party.kind, held.reason) == ("family_therapy_provider", "no_consent")


def test_the_programs_own_records_never_need_a_third_party_consent() -> None:
    checkin = _event(
        CheckInSubmitted,
        T0,
        {
            "craving": 2,
            "mood": 7,
            "sleep_hours": 7.5,
            "substance_use_reported": False,
            "safety_concern": False,
        },
        source="checkin-app",
    )
    assert consent_gate(PatientState(patient_id=PATIENT), checkin) is None

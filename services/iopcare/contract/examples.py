"""One valid, fictional example per event type, in wire (JSON) shape.

Used by the tests, the publisher's tests, the AsyncAPI document and the docs, so that every place
shows the same events. All ids are made up; none refers to a real person.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from iopcare.contract.alerts import AlertEvent, AlertEventData, alert_event
from iopcare.contract.envelope import new_event
from iopcare.contract.events import EVENT_TYPES, InboundEvent

__all__ = [
    "EXAMPLE_ALERT_DATA",
    "EXAMPLE_DATA",
    "EXAMPLE_PATIENT",
    "EXAMPLE_SOURCE",
    "EXAMPLE_TIME",
    "example_alert_event",
    "example_event",
]

EXAMPLE_PATIENT = "pt-7f3a9c"
EXAMPLE_SOURCE = "/clinics/example/ehr"
EXAMPLE_TIME = datetime(2024, 6, 3, 17, 30, tzinfo=UTC)

EXAMPLE_DATA: dict[str, dict[str, Any]] = {
    "iop.patient.enrolled": {
        "level_of_care": "2.1",
        "program_start": "2024-06-03",
        "planned_length_days": 90,
        "weekly_plan": {
            "group_sessions": 4,
            "individual_sessions": 1,
            "hours": 9.0,
            "fellowship_meetings": 2,
        },
        "counselor_id": "staff-c12",
        "supervisor_id": "staff-s03",
        "population": "adult",
    },
    "iop.checkin.submitted": {
        "craving": 6,
        "mood": 4,
        "sleep_hours": 5.5,
        "substance_use_reported": False,
        "safety_concern": False,
        "phq9_item9": 0,
        "cssrs_positive": None,
        "channel": "app",
    },
    "iop.session.scheduled": {
        "session_id": "sess-20240605-g1",
        "kind": "group",
        "starts_at": "2024-06-05T18:00:00-04:00",
        "duration_minutes": 180,
    },
    "iop.session.attended": {
        "session_id": "sess-20240605-g1",
        "kind": "group",
        "starts_at": "2024-06-05T18:00:00-04:00",
        "duration_minutes": 180,
    },
    "iop.session.missed": {
        "session_id": "sess-20240607-i1",
        "kind": "individual",
        "starts_at": "2024-06-07T16:00:00-04:00",
        "duration_minutes": 50,
        "excused": False,
        "reason_code": "transport",
    },
    "iop.sober_living.reported": {
        "house_id": "house-maple",
        "kind": "curfew_violation",
        "observed_at": "2024-06-08T23:40:00-04:00",
    },
    "iop.family_therapy.booked": {
        "booking_id": "ft-0042",
        "starts_at": "2024-06-12T17:00:00-04:00",
        "provider_id": "prov-family-01",
        "duration_minutes": 60,
    },
    "iop.family_therapy.cancelled": {
        "booking_id": "ft-0042",
        "starts_at": "2024-06-12T17:00:00-04:00",
        "provider_id": "prov-family-01",
        "cancelled_by": "family",
    },
    "iop.family_therapy.attended": {
        "booking_id": "ft-0043",
        "starts_at": "2024-06-19T17:00:00-04:00",
        "provider_id": "prov-family-01",
    },
    "iop.family_therapy.no_show": {
        "booking_id": "ft-0044",
        "starts_at": "2024-06-26T17:00:00-04:00",
        "provider_id": "prov-family-01",
    },
    "iop.toxicology.resulted": {
        "specimen_id": "spec-88213",
        "collected_at": "2024-06-06T10:15:00-04:00",
        "substances_positive": ["buprenorphine", "cannabis"],
        "prescribed_substances": ["buprenorphine"],
        "random": True,
    },
    "iop.fellowship.attended": {
        "fellowship": "NA",
        "attended_on": "2024-06-09",
        "verified": True,
    },
    "iop.level_of_care.changed": {
        "from_level": "2.1",
        "to_level": "2.5",
        "decided_by": "staff-c12",
        "reason_code": "step_up",
    },
    "iop.care_team.changed": {
        "counselor_id": "staff-c07",
        "supervisor_id": "staff-s03",
        "reason_code": "transfer",
    },
    "iop.treatment_plan.changed": {
        "weekly_plan": {"group_sessions": 3, "individual_sessions": 1, "hours": 9, "fellowship_meetings": 2},
        "effective_from": "2024-07-15",
    },
    "iop.patient.discharged": {
        "discharged_on": "2024-09-01",
        "disposition": "completed",
    },
    "iop.consent.granted": {
        "recipient_kind": "sober_living_house",
        "recipient_id": "house-maple",
        "scope": ["attendance", "housing"],
        "expires_at": "2025-06-03T00:00:00-04:00",
        "consent_form_id": "form-2024-117",
    },
    "iop.consent.revoked": {
        "recipient_kind": "sober_living_house",
        "recipient_id": "house-maple",
        "scope": ["housing"],
    },
}
"""Valid `data` for every inbound event type, keyed by CloudEvents `type`."""

EXAMPLE_ALERT_DATA: dict[str, Any] = {
    "alert_id": "0b8e4c1a-5d2f-4e7b-9a61-3c2d1e0f9a88",
    "dedup_key": "pt-7f3a9c:craving_high:2024-06-03",
    "patient_id": EXAMPLE_PATIENT,
    "counselor_id": "staff-c12",
    "supervisor_id": "staff-s03",
    "rule_id": "craving_high",
    "rule_version": "1",
    "rule_pack_version": "2024.06.1",
    "severity": "medium",
    "state": "open",
    "title": "Craving 9/10 reported",
    "explanation": "The latest check-in reports craving 9 of 10, at or above the threshold of 8.",
    "recommended_action": "Contact the patient today and review the relapse-prevention plan.",
    "evidence": {"event_ids": ["evt-000123"], "facts": {"craving": 9, "threshold": 8}},
    "occurrences": 1,
    "first_seen_at": "2024-06-03T17:30:00Z",
    "last_seen_at": "2024-06-03T17:30:00Z",
    "risk_score": 62,
    "escalated": False,
}
"""Valid `data` of an `iop.alert.created` event."""


# The clinic system's span, and the worker's span of the same trace for the alert it caused.
EXAMPLE_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
EXAMPLE_ALERT_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01"


def example_event(event_type: str) -> InboundEvent:
    """The example event of `event_type`, with a fixed envelope (deterministic)."""
    event = new_event(
        EVENT_TYPES[event_type],
        subject=EXAMPLE_PATIENT,
        source=EXAMPLE_SOURCE,
        data=EXAMPLE_DATA[event_type],
        time=EXAMPLE_TIME,
        id=f"example-{event_type}",
        traceparent=EXAMPLE_TRACEPARENT,
    )
    return cast(InboundEvent, event)  # EVENT_TYPES holds exactly the InboundEvent classes


def example_alert_event() -> AlertEvent:
    """An example `iop.alert.created` event, with a fixed envelope (deterministic)."""
    return alert_event(
        "created",
        AlertEventData.model_validate(EXAMPLE_ALERT_DATA),
        source="/iopcare/dispatcher",
        time=EXAMPLE_TIME,
        id="example-alert-created",
        traceparent=EXAMPLE_ALERT_TRACEPARENT,
    )

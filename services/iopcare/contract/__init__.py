"""The event contract: CloudEvents models of what iopcare consumes and publishes.

This package is the single source of `schemas/` (see `iopcare.contract.schemas`). Inbound events
arrive on `iop.events.v1` and are decoded with `decode_event`; alerts leave on `iop.alerts.v1`
as `AlertEvent`; messages that fail decoding go to `iop.events.v1.dlq` with `DeadLetterHeaders`.
"""

from iopcare.contract.alerts import (
    AcknowledgementOutcome,
    AlertEvent,
    AlertEventData,
    AlertEventKind,
    AlertEventType,
    AlertState,
    Evidence,
    Severity,
    Tier,
    alert_event,
)
from iopcare.contract.envelope import (
    CONTRACT_VERSION,
    BookingId,
    CalendarDate,
    CloudEvent,
    ContractModel,
    EventId,
    HouseId,
    Identifier,
    Instant,
    LevelOfCare,
    PatientId,
    RecipientId,
    SessionId,
    SpecimenId,
    StaffId,
    new_event,
)

# Every public name of the event models, so that a new event type needs no line here (its module's
# __all__ is the one list to keep).
from iopcare.contract.events import *  # noqa: F403
from iopcare.contract.events import __all__ as _event_names

__all__ = [
    "CONTRACT_VERSION",
    "AlertEvent",
    "AlertEventData",
    "AlertEventKind",
    "AlertEventType",
    "AcknowledgementOutcome",
    "AlertState",
    "BookingId",
    "CalendarDate",
    "CloudEvent",
    "ContractModel",
    "EventId",
    "Evidence",
    "HouseId",
    "Identifier",
    "Instant",
    "LevelOfCare",
    "PatientId",
    "RecipientId",
    "SessionId",
    "Severity",
    "Tier",
    "SpecimenId",
    "StaffId",
    "alert_event",
    "new_event",
    *_event_names,
]

"""Inbound events on `iop.events.v1`: one model per event type, and their decoding.

Each event type is a `CloudEvent` subclass whose `type` is a literal and whose `data` is a strict,
frozen payload model. `InboundEvent` is the discriminated union of all of them and `EVENT_TYPES`
maps each CloudEvents `type` string to its class.

`decode_event` is the only way raw Kafka bytes become an event. It either returns a validated
event or raises `InvalidEvent` with a `DeadLetterReason`, which the processor puts on the
dead-letter topic together with the original bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, cast

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from iopcare.contract.envelope import (
    BookingId,
    CalendarDate,
    CloudEvent,
    ContractModel,
    HouseId,
    Identifier,
    Instant,
    LevelOfCare,
    RecipientId,
    SessionId,
    SpecimenId,
    StaffId,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "EVENT_TYPES",
    "INBOUND_EVENT_ADAPTER",
    "MAX_CLOCK_SKEW",
    "CareTeamChanged",
    "CareTeamChangedData",
    "CheckInSubmitted",
    "CheckInSubmittedData",
    "ConsentData",
    "ConsentGranted",
    "ConsentGrantedData",
    "ConsentRevoked",
    "ConsentScope",
    "DeadLetterHeaders",
    "DeadLetterReason",
    "FamilyTherapyAttended",
    "FamilyTherapyBooked",
    "FamilyTherapyBookedData",
    "FamilyTherapyCancelled",
    "FamilyTherapyCancelledData",
    "FamilyTherapyData",
    "FamilyTherapyNoShow",
    "FellowshipAttended",
    "FellowshipAttendedData",
    "InboundEvent",
    "InvalidEvent",
    "LevelOfCareChanged",
    "LevelOfCareChangedData",
    "PatientDischarged",
    "PatientDischargedData",
    "PatientEnrolled",
    "PatientEnrolledData",
    "SessionAttended",
    "SessionData",
    "SessionMissed",
    "SessionMissedData",
    "SessionScheduled",
    "SoberLivingReported",
    "SoberLivingReportedData",
    "Substance",
    "ToxicologyResulted",
    "ToxicologyResultedData",
    "TreatmentPlanChanged",
    "TreatmentPlanChangedData",
    "WeeklyPlan",
    "check_event_time",
    "decode_event",
    "encode_event",
]

Substance = Literal[
    "alcohol",
    "amphetamine",
    "methamphetamine",
    "benzodiazepine",
    "buprenorphine",
    "cannabis",
    "cocaine",
    "fentanyl",
    "methadone",
    "opiate",
    "oxycodone",
    "barbiturate",
    "mdma",
    "pcp",
    "kratom",
    "xylazine",
    "other",
]
"""Substance classes a toxicology panel reports. A closed vocabulary: lab free text stays out."""

ConsentScope = Literal["attendance", "toxicology", "checkins", "alerts", "housing"]
"""What a consent lets the program receive from or disclose to a third party."""


def _sorted_list(values: frozenset[str]) -> list[str]:
    return sorted(values)


# Sets go on the wire as sorted arrays so that encoding the same event twice gives the same bytes.
def _no_repeats(values: Any) -> Any:
    """A set on the wire is a list without repeats (the schema's `uniqueItems`): a repeated entry is
    refused rather than silently collapsed, so that the schema and the model agree."""
    if not isinstance(values, list):
        return values
    if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
        raise PydanticCustomError("set_repeats", "an entry appears twice")
    # What a before-validator returns is validated as a Python value, which strict validation
    # takes as a set only when it is one.
    try:
        return frozenset(values)
    except TypeError:  # an unhashable entry (an object, a list): the entry's own check refuses it
        return values


SubstanceSet = Annotated[
    frozenset[Substance], BeforeValidator(_no_repeats), PlainSerializer(_sorted_list, when_used="json")
]
ScopeSet = Annotated[
    frozenset[ConsentScope], BeforeValidator(_no_repeats), PlainSerializer(_sorted_list, when_used="json")
]


# --- enrolment ---------------------------------------------------------------------------------


class WeeklyPlan(ContractModel):
    """What the treatment plan asks of the patient each week; the rules compare attendance to it."""

    group_sessions: int = Field(default=4, ge=0, le=21)
    """Group therapy sessions per week."""
    individual_sessions: int = Field(default=1, ge=0, le=14)
    """Individual therapy sessions per week."""
    hours: float = Field(default=9, ge=0, le=80)
    """Hours of treatment per week (ASAM 2.1: 9-19 for adults, at least 6 for adolescents)."""
    fellowship_meetings: int = Field(default=0, ge=0, le=21)
    """Outside fellowship meetings (AA, NA, SMART, ...) required per week."""


class PatientEnrolledData(ContractModel):
    """A patient starts the program at a level of care with a weekly plan and a care team."""

    level_of_care: LevelOfCare
    program_start: CalendarDate
    """First day of the program."""
    planned_length_days: int = Field(default=90, ge=1, le=730)
    """Planned length of stay in days; reassessment, not this number, decides a move."""
    weekly_plan: WeeklyPlan = WeeklyPlan()
    counselor_id: StaffId
    """Primary counselor: the first recipient of the patient's alerts."""
    supervisor_id: StaffId
    """Clinical supervisor: receives escalations of unacknowledged alerts."""
    population: Literal["adult", "adolescent"] = "adult"
    """Adult or adolescent program; the hour thresholds differ."""


class PatientEnrolled(CloudEvent[PatientEnrolledData]):
    """`iop.patient.enrolled`: a patient was admitted to the program."""

    type: Literal["iop.patient.enrolled"] = "iop.patient.enrolled"


# --- check-ins ---------------------------------------------------------------------------------


class CheckInSubmittedData(ContractModel):
    """A self-report check-in (A-CHESS style): scales and yes/no answers, no free text."""

    craving: int = Field(ge=0, le=10)
    """Craving, 0 (none) to 10 (strongest)."""
    mood: int = Field(ge=0, le=10)
    """Mood, 0 (worst) to 10 (best)."""
    sleep_hours: float = Field(ge=0, le=24)
    """Hours slept last night."""
    substance_use_reported: bool
    """The patient reports use since the last check-in."""
    safety_concern: bool
    """The patient reports feeling unsafe; triggers a same-day safety review."""
    phq9_item9: int | None = Field(default=None, ge=0, le=3)
    """PHQ-9 item 9 (thoughts of self-harm), 0-3, when asked."""
    cssrs_positive: bool | None = None
    """C-SSRS screener result, when administered."""
    channel: Literal["app", "sms", "in_person", "phone"] = "app"
    """How the check-in was collected."""


class CheckInSubmitted(CloudEvent[CheckInSubmittedData]):
    """`iop.checkin.submitted`: the patient answered a check-in."""

    type: Literal["iop.checkin.submitted"] = "iop.checkin.submitted"


# --- treatment sessions ------------------------------------------------------------------------


class SessionData(ContractModel):
    """A treatment session on the patient's schedule."""

    session_id: SessionId
    kind: Literal["group", "individual", "family"]
    """Group, individual or family session (the three prongs of IOP)."""
    starts_at: Instant
    """Scheduled start."""
    duration_minutes: int = Field(ge=1, le=600)
    """Scheduled length; attended minutes count towards the weekly hours."""


class SessionMissedData(SessionData):
    """A session the patient did not attend, with a coded reason (codes only: 42 CFR Part 2)."""

    excused: bool = False
    """Excused in advance by the care team; excused misses do not count as disengagement."""
    reason_code: Literal["illness", "work", "transport", "childcare", "no_contact", "other"] | None = None
    """Why the session was missed, when known."""


class SessionScheduled(CloudEvent[SessionData]):
    """`iop.session.scheduled`: a session was put on the patient's schedule."""

    type: Literal["iop.session.scheduled"] = "iop.session.scheduled"


class SessionAttended(CloudEvent[SessionData]):
    """`iop.session.attended`: the patient attended a session."""

    type: Literal["iop.session.attended"] = "iop.session.attended"


class SessionMissed(CloudEvent[SessionMissedData]):
    """`iop.session.missed`: the patient missed a session."""

    type: Literal["iop.session.missed"] = "iop.session.missed"


# --- sober living ------------------------------------------------------------------------------


class SoberLivingReportedData(ContractModel):
    """A report from a sober-living house; accepted only while the patient's consent for it is active."""

    house_id: HouseId
    kind: Literal[
        "curfew_violation",
        "positive_test",
        "missed_house_meeting",
        "conflict",
        "left",
        "evicted",
        "compliant_week",
    ]
    """What the house reports."""
    observed_at: Instant
    """When the house observed it."""


class SoberLivingReported(CloudEvent[SoberLivingReportedData]):
    """`iop.sober_living.reported`: a sober-living house reported on the patient."""

    type: Literal["iop.sober_living.reported"] = "iop.sober_living.reported"


# --- family therapy ----------------------------------------------------------------------------


class FamilyTherapyData(ContractModel):
    """A family-therapy appointment with an outside provider (a third party for consent)."""

    booking_id: BookingId
    starts_at: Instant
    """Appointment start."""
    provider_id: RecipientId
    """The family-therapy provider, as registered in the consent registry."""


class FamilyTherapyBookedData(FamilyTherapyData):
    """A family-therapy appointment that was booked."""

    duration_minutes: int = Field(default=60, ge=1, le=600)
    """Booked length."""


class FamilyTherapyCancelledData(FamilyTherapyData):
    """A family-therapy appointment that was cancelled, and by whom."""

    cancelled_by: Literal["patient", "family", "provider"]


class FamilyTherapyBooked(CloudEvent[FamilyTherapyBookedData]):
    """`iop.family_therapy.booked`: a family-therapy appointment was booked."""

    type: Literal["iop.family_therapy.booked"] = "iop.family_therapy.booked"


class FamilyTherapyCancelled(CloudEvent[FamilyTherapyCancelledData]):
    """`iop.family_therapy.cancelled`: a family-therapy appointment was cancelled."""

    type: Literal["iop.family_therapy.cancelled"] = "iop.family_therapy.cancelled"


class FamilyTherapyAttended(CloudEvent[FamilyTherapyData]):
    """`iop.family_therapy.attended`: the family-therapy appointment took place."""

    type: Literal["iop.family_therapy.attended"] = "iop.family_therapy.attended"


class FamilyTherapyNoShow(CloudEvent[FamilyTherapyData]):
    """`iop.family_therapy.no_show`: nobody came to the family-therapy appointment."""

    type: Literal["iop.family_therapy.no_show"] = "iop.family_therapy.no_show"


# --- toxicology --------------------------------------------------------------------------------


class ToxicologyResultedData(ContractModel):
    """The result of a toxicology screen, by substance class."""

    specimen_id: SpecimenId
    collected_at: Instant
    """When the specimen was collected (the result usually arrives later)."""
    substances_positive: SubstanceSet = Field(max_length=32)
    """Substance classes the screen found; empty for a negative screen."""
    prescribed_substances: SubstanceSet = Field(default=frozenset(), max_length=32)
    """Substances the patient is prescribed (e.g. buprenorphine): expected, not a positive finding."""
    random: bool = True
    """Random and unannounced, as recommended, rather than scheduled or for cause."""

    def unexpected_positives(self) -> frozenset[Substance]:
        """Positive substances the patient is not prescribed: the clinically relevant positives."""
        return self.substances_positive - self.prescribed_substances


class ToxicologyResulted(CloudEvent[ToxicologyResultedData]):
    """`iop.toxicology.resulted`: a toxicology screen has a result."""

    type: Literal["iop.toxicology.resulted"] = "iop.toxicology.resulted"


# --- fellowship --------------------------------------------------------------------------------


class FellowshipAttendedData(ContractModel):
    """Attendance at an outside mutual-help meeting."""

    fellowship: Literal["AA", "NA", "CA", "SMART", "other"]
    attended_on: CalendarDate
    verified: bool = False
    """Verified (e.g. a signed attendance sheet) rather than self-reported."""


class FellowshipAttended(CloudEvent[FellowshipAttendedData]):
    """`iop.fellowship.attended`: the patient went to an outside fellowship meeting."""

    type: Literal["iop.fellowship.attended"] = "iop.fellowship.attended"


# --- level of care and discharge ---------------------------------------------------------------


class LevelOfCareChangedData(ContractModel):
    """A clinician moved the patient to another level of care (the system only recommends)."""

    from_level: LevelOfCare
    to_level: LevelOfCare
    decided_by: StaffId
    """The clinician who decided."""
    reason_code: Literal["step_up", "step_down", "lateral", "administrative"]


class LevelOfCareChanged(CloudEvent[LevelOfCareChangedData]):
    """`iop.level_of_care.changed`: the patient's level of care changed."""

    type: Literal["iop.level_of_care.changed"] = "iop.level_of_care.changed"


class CareTeamChangedData(ContractModel):
    """The patient's care team changed (FHIR CareTeam): a transfer to another counselor, cover for
    an absence, a new supervisor. The program goes on; open alerts follow the patient."""

    counselor_id: StaffId
    """The counselor from now on: the first recipient of the patient's alerts."""
    supervisor_id: StaffId
    """The supervisor from now on: receives escalations."""
    reason_code: Literal["transfer", "coverage", "supervision", "administrative"] = "transfer"
    """Why the team changed."""


class CareTeamChanged(CloudEvent[CareTeamChangedData]):
    """`iop.care_team.changed`: the patient has a new counselor or supervisor."""

    type: Literal["iop.care_team.changed"] = "iop.care_team.changed"


class TreatmentPlanChangedData(ContractModel):
    """The treatment plan's weekly expectations changed (FHIR CarePlan) without a new enrollment."""

    weekly_plan: WeeklyPlan
    """What the plan asks of the patient each week from ``effective_from`` on."""
    effective_from: CalendarDate
    """First day the new plan applies; program weeks starting on or after it are judged by it."""


class TreatmentPlanChanged(CloudEvent[TreatmentPlanChangedData]):
    """`iop.treatment_plan.changed`: the weekly plan changed."""

    type: Literal["iop.treatment_plan.changed"] = "iop.treatment_plan.changed"


class PatientDischargedData(ContractModel):
    """The end of the patient's stay in the program."""

    discharged_on: CalendarDate
    disposition: Literal["completed", "transferred", "left_against_advice", "administrative", "other"]


class PatientDischarged(CloudEvent[PatientDischargedData]):
    """`iop.patient.discharged`: the patient left the program."""

    type: Literal["iop.patient.discharged"] = "iop.patient.discharged"


# --- consent (42 CFR Part 2) -------------------------------------------------------------------


class ConsentData(ContractModel):
    """A patient consent naming one recipient and what may be shared with it."""

    recipient_kind: Literal[
        "sober_living_house", "family_therapy_provider", "family_member", "payer", "other_provider"
    ]
    recipient_id: RecipientId
    scope: ScopeSet = Field(min_length=1)
    """The kinds of information covered."""


class ConsentGrantedData(ConsentData):
    """A written Part 2 consent; it always carries an expiry."""

    expires_at: Instant
    """When the consent lapses; after it, the recipient can neither report nor receive."""
    consent_form_id: Identifier
    """Id of the signed consent form in the clinic's records."""


class ConsentGranted(CloudEvent[ConsentGrantedData]):
    """`iop.consent.granted`: the patient consented to sharing with a recipient."""

    type: Literal["iop.consent.granted"] = "iop.consent.granted"

    @model_validator(mode="after")
    def _expires_after_grant(self) -> ConsentGranted:
        if self.data.expires_at <= self.time:
            raise PydanticCustomError("consent_expires_before_grant", "data.expires_at must be after time")
        return self


class ConsentRevoked(CloudEvent[ConsentData]):
    """`iop.consent.revoked`: the patient revoked (part of) a consent."""

    type: Literal["iop.consent.revoked"] = "iop.consent.revoked"


# --- the union ---------------------------------------------------------------------------------

InboundEvent = Annotated[
    PatientEnrolled
    | CheckInSubmitted
    | SessionScheduled
    | SessionAttended
    | SessionMissed
    | SoberLivingReported
    | FamilyTherapyBooked
    | FamilyTherapyCancelled
    | FamilyTherapyAttended
    | FamilyTherapyNoShow
    | ToxicologyResulted
    | FellowshipAttended
    | LevelOfCareChanged
    | CareTeamChanged
    | TreatmentPlanChanged
    | PatientDischarged
    | ConsentGranted
    | ConsentRevoked,
    Field(discriminator="type"),
]
"""Any event accepted on `iop.events.v1`, discriminated by `type`."""

INBOUND_EVENT_ADAPTER: TypeAdapter[InboundEvent] = TypeAdapter(InboundEvent)
"""Validates and serializes `InboundEvent` values (e.g. lists of them in fixtures)."""


def _event_type(cls: type[CloudEvent[Any]]) -> str:
    return cast(str, cls.model_fields["type"].default)


_EVENT_CLASSES: tuple[type[CloudEvent[Any]], ...] = (
    PatientEnrolled,
    CheckInSubmitted,
    SessionScheduled,
    SessionAttended,
    SessionMissed,
    SoberLivingReported,
    FamilyTherapyBooked,
    FamilyTherapyCancelled,
    FamilyTherapyAttended,
    FamilyTherapyNoShow,
    ToxicologyResulted,
    FellowshipAttended,
    LevelOfCareChanged,
    CareTeamChanged,
    TreatmentPlanChanged,
    PatientDischarged,
    ConsentGranted,
    ConsentRevoked,
)

EVENT_TYPES: dict[str, type[CloudEvent[Any]]] = {_event_type(cls): cls for cls in _EVENT_CLASSES}
"""CloudEvents `type` string to event class, in a stable order (enrolment to consent)."""


# --- decoding ----------------------------------------------------------------------------------

DeadLetterReason = Literal[
    "undecodable",
    "invalid_json",
    "not_an_object",
    "unknown_type",
    "schema_violation",
    "key_mismatch",
    "oversized",
    # Raised by the processor, not by decode_event:
    "future_time",  # event time later than now plus the allowed clock skew
    "store_rejected",  # valid by the contract, but Postgres refused to store it
    "processing_failed",  # valid by the contract, but deciding it raised (a defect to fix, then resend)
]
"""Why a message went to the dead-letter topic instead of being processed."""

MAX_CLOCK_SKEW = timedelta(days=1)
"""How far past the wall clock an event's time may be; later is ``future_time`` (in the processor and
in the API's ingest, so both refuse the same events)."""


def check_event_time(event: InboundEvent, now: datetime, max_skew: timedelta = MAX_CLOCK_SKEW) -> None:
    """The processor's rule for an event's time, which the API's ingest and the publisher apply too,
    so that all three refuse the same events: not later than ``now`` plus the allowed clock skew (a
    clock gone wrong at the source would otherwise move the patient's latest event time into the
    future and make every real event late). Raises :class:`InvalidEvent` (``future_time``)."""
    if event.time > now + max_skew:
        raise InvalidEvent("future_time", "time: later than now + allowed skew")


class InvalidEvent(Exception):
    """A message that is not a valid inbound event.

    `detail` names locations and error kinds only, never field values: payloads may hold PHI and
    the detail travels in DLQ headers, logs and metrics. The original bytes go to the DLQ as-is.
    """

    def __init__(self, reason: DeadLetterReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: DeadLetterReason = reason
        self.detail: str = detail

    def __reduce__(self) -> tuple[type[InvalidEvent], tuple[DeadLetterReason, str]]:
        # Exceptions pickle through `args`, which here is the joined message, not the two fields.
        return (InvalidEvent, (self.reason, self.detail))


DEFAULT_MAX_BYTES = 256 * 1024
"""Largest accepted message; real events are well under 2 KiB, so anything bigger is a mistake."""

_MAX_REPORTED_ERRORS = 5
# Unknown keys are locations and are useful in a DLQ detail ("data.patient_name: extra_forbidden"),
# but a key is still sender-chosen text: only echo keys shaped like a field name.
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _location(loc: Iterable[int | str]) -> str:
    parts = [str(p) if isinstance(p, int) or _FIELD_NAME.match(p) else "<key>" for p in loc]
    return ".".join(parts) or "<root>"


def _schema_detail(errors: list[ErrorDetails]) -> str:
    """Where and what, with the validator's explanation (which names the rule, e.g. "Input should be
    less than or equal to 10", never the input: the models hide it)."""
    shown = [f"{_location(e['loc'])}: {e['type']} ({e['msg']})" for e in errors[:_MAX_REPORTED_ERRORS]]
    if len(errors) > _MAX_REPORTED_ERRORS:
        shown.append(f"+{len(errors) - _MAX_REPORTED_ERRORS} more")
    return "; ".join(shown)


def decode_event(
    raw: bytes,
    *,
    key: bytes | str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> InboundEvent:
    """Decode one Kafka message value into a validated inbound event.

    Checks, in order: size (`oversized`), UTF-8 (`undecodable`), JSON syntax (`invalid_json`),
    a JSON object (`not_an_object`), a known `type` (`unknown_type`), the schema of that type
    (`schema_violation`) and, when `key` is given, that it equals `subject` (`key_mismatch`:
    a wrongly keyed event would land on another patient's partition and break ordering).
    Validation is strict: `"5"` is not an integer and `1` is not a boolean.
    Raises `InvalidEvent` on the first failed check.
    """
    if len(raw) > max_bytes:
        raise InvalidEvent("oversized", f"{len(raw)} bytes > max {max_bytes}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # `from None` throughout: the chained exceptions hold the raw input, which may be PHI.
        raise InvalidEvent("undecodable", f"invalid utf-8 at byte {exc.start}") from None
    try:
        event = INBOUND_EVENT_ADAPTER.validate_json(text, strict=True)
    except ValidationError:
        # The happy path parses once; only failures pay for a second parse to classify them.
        raise _classify(text) from None
    if key is not None:
        key_text = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
        if key_text != event.subject:
            raise InvalidEvent("key_mismatch", "message key differs from subject")
    if event.partitionkey is not None and event.partitionkey != event.subject:
        raise InvalidEvent("key_mismatch", "partitionkey differs from subject")
    return event


class _NotJsonConstant(ValueError):
    """NaN, Infinity or -Infinity: the stdlib reads them, JSON has no such thing."""


def _not_json(constant: str) -> None:
    raise _NotJsonConstant(constant)


def _classify(text: str) -> InvalidEvent:
    try:
        # The stdlib takes NaN and Infinity, which JSON does not have: `NaN` alone is invalid JSON,
        # not "a JSON number" (RFC 8259).
        obj = json.loads(text, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        return InvalidEvent("invalid_json", f"{exc.msg} at line {exc.lineno} column {exc.colno}")
    except _NotJsonConstant:
        return InvalidEvent("invalid_json", "NaN or Infinity is not JSON")
    except ValueError:
        # Python refuses to convert an integer of more than 4,300 digits (sys.get_int_max_str_digits).
        return InvalidEvent("invalid_json", "a number with too many digits")
    except RecursionError:
        return InvalidEvent("invalid_json", "nesting too deep")
    if not isinstance(obj, dict):
        return InvalidEvent("not_an_object", f"top level is a JSON {_json_kind(obj)}")
    event_type = obj.get("type")
    if event_type is None:
        return InvalidEvent("unknown_type", "type: missing")
    if not isinstance(event_type, str):
        return InvalidEvent("unknown_type", f"type: not a string but a JSON {_json_kind(event_type)}")
    if event_type not in EVENT_TYPES:
        return InvalidEvent("unknown_type", "type: not an event type of this contract")
    try:
        EVENT_TYPES[event_type].model_validate_json(text, strict=True)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        if any(e["type"] == "json_invalid" for e in errors):
            # The stdlib parser is more lenient than pydantic's (e.g. NaN, lone surrogates).
            return InvalidEvent("invalid_json", "rejected by the strict JSON parser")
        return InvalidEvent("schema_violation", _schema_detail(errors))
    # Valid for its class yet rejected by the union: not expected; never let it pass silently.
    return InvalidEvent("schema_violation", "rejected by the event union")


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def encode_event(event: CloudEvent[Any]) -> bytes:
    """Serialize an event (inbound or alert) as compact CloudEvents structured JSON in UTF-8.

    Deterministic for a given event (sets are sorted); `decode_event(encode_event(e)) == e`.
    """
    # An unset optional attribute is left out, as CloudEvents does.
    unset = {name for name in _OPTIONAL_ATTRIBUTES if getattr(event, name) is None} or None
    return event.model_dump_json(by_alias=True, exclude=unset).encode("utf-8")


_OPTIONAL_ATTRIBUTES = ("traceparent", "tracestate", "dataschema", "partitionkey")


# --- dead letters ------------------------------------------------------------------------------

_DLQ_DETAIL_MAX = 1000


class DeadLetterHeaders(ContractModel):
    """Kafka headers of a message on `iop.events.v1.dlq`; the message value is the original bytes.

    Header values are UTF-8 text on the wire, so partition and offset are decimal strings.
    Other headers (e.g. the original message's tracing headers) may travel alongside.
    """

    # Other headers may ride along, so unknown ones are ignored rather than forbidden.
    model_config = ConfigDict(extra="ignore")

    reason: DeadLetterReason = Field(alias="iopcare-dlq-reason")
    """Why the message was dead-lettered."""
    detail: str = Field(alias="iopcare-dlq-detail", max_length=_DLQ_DETAIL_MAX)
    """Locations and error kinds, never field values (see `InvalidEvent`)."""
    source_topic: str = Field(alias="iopcare-dlq-source-topic", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    """Topic the message was consumed from."""
    source_partition: str = Field(alias="iopcare-dlq-source-partition", pattern=r"^(0|[1-9][0-9]{0,9})$")
    """Partition it was consumed from."""
    source_offset: str = Field(alias="iopcare-dlq-source-offset", pattern=r"^(0|[1-9][0-9]{0,18})$")
    """Offset it had there: with the topic and partition, where to find it again."""
    failed_at: Instant = Field(alias="iopcare-dlq-failed-at")
    """When decoding failed."""
    original_bytes: str | None = Field(
        default=None, alias="iopcare-dlq-original-bytes", pattern=r"^(0|[1-9][0-9]{0,18})$"
    )
    """Present when the message value is only the first bytes of the original: an oversized
    message (1 MB and more) may not fit on the dead-letter topic. The original's size; the
    `dead_letters` table keeps every byte."""

    @classmethod
    def for_failure(
        cls,
        error: InvalidEvent,
        *,
        topic: str,
        partition: int,
        offset: int,
        failed_at: datetime | None = None,
        original_bytes: int | None = None,
    ) -> DeadLetterHeaders:
        """Headers for a message that `decode_event` rejected with `error`."""
        return cls.model_validate(
            {
                "iopcare-dlq-reason": error.reason,
                "iopcare-dlq-detail": error.detail[:_DLQ_DETAIL_MAX],
                "iopcare-dlq-source-topic": topic,
                "iopcare-dlq-source-partition": str(partition),
                "iopcare-dlq-source-offset": str(offset),
                "iopcare-dlq-failed-at": failed_at if failed_at is not None else datetime.now(UTC),
                "iopcare-dlq-original-bytes": None if original_bytes is None else str(original_bytes),
            }
        )

    def to_kafka(self) -> list[tuple[str, bytes]]:
        """The headers as Kafka expects them: `(name, UTF-8 value)` pairs."""
        return [
            (name, str(value).encode())
            for name, value in self.model_dump(mode="json", by_alias=True, exclude_none=True).items()
        ]

    @classmethod
    def from_kafka(cls, headers: Iterable[tuple[str, bytes]]) -> DeadLetterHeaders:
        """Read the dead-letter headers back from a DLQ message's headers (others are ignored)."""
        return cls.model_validate(
            {
                name: value.decode("utf-8", errors="replace")
                for name, value in headers
                if name.startswith("iopcare-dlq-")
            }
        )

"""The CloudEvents 1.0 envelope and the value types shared by every event and alert.

Everything on the wire is CloudEvents 1.0 in structured JSON mode: one JSON object carrying the
context attributes (`specversion`, `id`, `source`, `type`, `time`, `subject`, optionally
`traceparent`) and the payload in `data`. `subject` is always the pseudonymous patient id, which
is also the Kafka message key, so all of one patient's events share a partition and stay in order.

Privacy (42 CFR Part 2, HIPAA): identifiers in the contract are opaque pseudonyms and every
non-identifier field is a number, a date or a code from a closed vocabulary. There is no free text
anywhere in the inbound contract, so nothing a clinician or patient types can reach Kafka, the
event log, the logs or a metric label by way of these models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar
from uuid import uuid4

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from iopcare.tracing import TRACEPARENT_PATTERN

__all__ = [
    "CONTRACT_VERSION",
    "BookingId",
    "CalendarDate",
    "CloudEvent",
    "ContractModel",
    "EventId",
    "HouseId",
    "Identifier",
    "Instant",
    "LevelOfCare",
    "PatientId",
    "RecipientId",
    "SessionId",
    "SpecimenId",
    "StaffId",
    "new_event",
]

CONTRACT_VERSION = "1.0.0"
"""Version of the published contract. The major version is the `v1` in the topic names; a breaking
change means new topics (`iop.events.v2`), not a changed meaning of the old ones."""


class ContractModel(BaseModel):
    """Base of every contract model: strict shape, immutable, no PHI in error messages.

    `extra="forbid"` makes an unknown field an error instead of silently dropped data;
    `hide_input_in_errors` keeps field values (possibly PHI) out of `ValidationError` text, which
    tends to end up in logs; `allow_inf_nan=False` because NaN passes no clinical threshold sensibly.
    Attribute docstrings become field descriptions in the published JSON Schemas.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
        allow_inf_nan=False,
        hide_input_in_errors=True,
        use_attribute_docstrings=True,
    )


# Bounds for every timestamp and date in the contract. A year like 0024 or 2204 is a typo or a
# unit bug upstream; rejecting it at the edge keeps it out of windows such as "last 14 days".
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


# The wire form of an instant, which the published JSON Schema carries as its `pattern`: RFC 3339
# (section 5.6: `T` or `t`, `Z` or an offset, never a space or a missing second) with a year
# from 2000 to 2099 as written. The model checks the same shape before parsing, so that the schema
# and the model accept the same strings (the parser alone also takes `2026-03-04 19:30Z`).
INSTANT_PATTERN = (
    r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
DATE_PATTERN = r"^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
_INSTANT_SHAPE = re.compile(INSTANT_PATTERN)
_DATE_SHAPE = re.compile(DATE_PATTERN)


# The text is parsed here once its shape is checked: what a before-validator returns is validated
# as a Python value, which strict validation takes only as a datetime or date. The standard
# library's ISO parser (in C) reads exactly this shape once upper-cased (`t`, `z`).


def _instant_shape(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if not _INSTANT_SHAPE.match(value):
        raise PydanticCustomError(
            "datetime_format",
            "must be an RFC 3339 date-time with an offset, 2000 to 2099, e.g. 2026-03-04T19:30:00Z",
        )
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError:  # 30 February, say
        raise PydanticCustomError("datetime_parsing", "not a date and time of the calendar") from None


def _date_shape(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    if not _DATE_SHAPE.match(value):
        raise PydanticCustomError("date_format", "must be a date YYYY-MM-DD, 2000 to 2099")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("date_parsing", "not a date of the calendar") from None


def _plausible_instant(value: datetime) -> datetime:
    # The year as written (the pattern's), not in UTC: 2099-12-31T23:30:00-05:00 is in range.
    if not _EARLIEST.year <= value.year < _LATEST.year:
        raise PydanticCustomError(
            "datetime_out_of_range", "must be on or after 2000-01-01 and before 2100-01-01 (as written)"
        )
    # Held as UTC: the instant is the same, and comparisons with the standard library's UTC are
    # three times faster than with the parser's own tzinfo, which the fold and rules do constantly.
    return value.astimezone(UTC)


def _plausible_date(value: date) -> date:
    if not _EARLIEST.date() <= value < _LATEST.date():
        raise PydanticCustomError("date_out_of_range", "must be on or after 2000-01-01 and before 2100-01-01")
    return value


Instant = Annotated[
    AwareDatetime,
    BeforeValidator(_instant_shape),
    AfterValidator(_plausible_instant),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": INSTANT_PATTERN}),
]
"""A timezone-aware point in time (RFC 3339 with an offset on the wire), 2000 <= year < 2100."""

CalendarDate = Annotated[
    date,
    BeforeValidator(_date_shape),
    AfterValidator(_plausible_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]
"""A calendar date (`YYYY-MM-DD`) in the clinic's local calendar, 2000 <= year < 2100."""

Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")]
"""An opaque identifier: 3 to 64 characters, letters, digits, `_` and `-`, starting alphanumeric.

The pattern keeps names, e-mail addresses and anything with spaces out of id fields by shape.
"""

PatientId = Annotated[
    Identifier,
    Field(
        description="Pseudonymous patient id issued by the program. Never a name, MRN, SSN or other "
        "direct identifier. Also the CloudEvents `subject` and the Kafka message key."
    ),
]
StaffId = Annotated[Identifier, Field(description="Pseudonymous id of a counselor or clinical supervisor.")]
HouseId = Annotated[Identifier, Field(description="Id of a sober-living house known to the program.")]
RecipientId = Annotated[
    Identifier,
    Field(
        description="Id of a third party (house, family-therapy provider, payer...) in the consent registry."
    ),
]
SessionId = Annotated[Identifier, Field(description="Id of a scheduled treatment session.")]
BookingId = Annotated[Identifier, Field(description="Id of a family-therapy booking.")]
SpecimenId = Annotated[Identifier, Field(description="Laboratory id of a toxicology specimen.")]

LevelOfCare = Annotated[
    str,
    StringConstraints(pattern=r"^\d(\.\d)?$"),
    Field(
        description="ASAM level of care, e.g. `2.1` (IOP) or `2.5` (partial hospitalization). The catalogue "
        "of valid levels (3rd or 4th edition) is clinic configuration, not part of the contract."
    ),
]

EventId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[!-~]+$"),
    Field(description="Producer-assigned event id: printable ASCII without whitespace, unique per `source`."),
]

_SOURCE_PATTERN = r"^[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+$"

DataT = TypeVar("DataT", bound=BaseModel)


def _type_is_required(schema: dict[str, Any]) -> None:
    # Subclasses give `type` a default so constructing an event does not repeat it, which would
    # make pydantic list it as optional; on the wire it is required (it selects the schema).
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


# W3C Trace Context: list-members `key=value` separated by commas (spaces and tabs around them).
_TRACESTATE_MEMBER = r"[a-z0-9*/@_-]+=[\x20-\x2b\x2d-\x3c\x3e-\x7e]*"
_TRACESTATE_PATTERN = rf"^[ \t]*{_TRACESTATE_MEMBER}(?:[ \t]*,[ \t]*{_TRACESTATE_MEMBER})*[ \t]*$"
# An absolute URI: a scheme, a colon, then no whitespace.
_URI_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s]+$"


class CloudEvent(ContractModel, Generic[DataT]):
    """A CloudEvents 1.0 event in structured JSON mode, with a typed `data` payload.

    `source` + `id` identify an event uniquely (`idempotency_key`): a redelivered or republished
    event carries the same pair and is recorded once. `subject` is the pseudonymous patient id.
    """

    model_config = ConfigDict(json_schema_extra=_type_is_required)

    specversion: Literal["1.0"]
    """CloudEvents specification version."""
    id: EventId
    source: Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=_SOURCE_PATTERN)]
    """URI-reference of the producing system, e.g. `/clinics/north/ehr` or `urn:iop:clinic-7:scheduler`."""
    type: str
    """Event type; selects the `data` schema."""
    time: Instant
    """When the fact happened (not when it was sent), timezone-aware."""
    subject: PatientId
    datacontenttype: Literal["application/json"] = "application/json"
    """Media type of `data`."""
    traceparent: Annotated[str, StringConstraints(pattern=TRACEPARENT_PATTERN)] | None = None
    """W3C Trace Context `traceparent` of the span that produced the event (the CloudEvents
    Distributed Tracing extension), e.g. `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
    Optional; iopcare continues the trace to the alert events and webhooks the event causes."""
    tracestate: Annotated[str, StringConstraints(max_length=512, pattern=_TRACESTATE_PATTERN)] | None = None
    """W3C Trace Context `tracestate` travelling with `traceparent` (vendor entries); optional."""
    dataschema: (
        Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=_URI_PATTERN)] | None
    ) = None
    """URI of the schema `data` follows (iopcare's own are under `schemas/`); optional, not
    fetched."""
    partitionkey: PatientId | None = None
    """The CloudEvents Kafka binding's partition key extension: when present, it must be the
    patient id (`subject`), which is also the record key."""
    data: DataT

    @property
    def idempotency_key(self) -> tuple[str, str]:
        """`(source, id)`: the key under which this event is recorded at most once."""
        return (self.source, self.id)

    @property
    def patient_id(self) -> str:
        """The pseudonymous patient id (the CloudEvents `subject`)."""
        return self.subject


EventT = TypeVar("EventT", bound=CloudEvent[Any])


def new_event(
    event_cls: type[EventT],
    *,
    subject: str,
    source: str,
    data: BaseModel | Mapping[str, Any],
    time: datetime | None = None,
    id: str | None = None,
    type: str | None = None,
    traceparent: str | None = None,
) -> EventT:
    """Build and validate an event of `event_cls`, filling in the envelope.

    `type` defaults to the class's own (only a class with several types, such as `AlertEvent`,
    needs it), `id` to a fresh UUID4 and `time` to now (UTC). `data` may be the payload model or a
    mapping in its JSON shape (ISO dates, lists for sets).
    Raises `pydantic.ValidationError` if anything is out of contract.
    """
    fields: dict[str, Any] = {
        "specversion": "1.0",
        "id": id if id is not None else str(uuid4()),
        "source": source,
        "time": time if time is not None else datetime.now(UTC),
        "subject": subject,
        "data": data,
    }
    if type is not None:
        fields["type"] = type
    if traceparent is not None:
        fields["traceparent"] = traceparent
    return event_cls.model_validate(fields)

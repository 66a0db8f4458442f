"""Inbound events: every type round-trips, and every kind of bad message gets the right reason."""

from __future__ import annotations

import json
import pickle
import re
import traceback
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from iopcare.contract import (
    EVENT_TYPES,
    CheckInSubmitted,
    CheckInSubmittedData,
    DeadLetterHeaders,
    InboundEvent,
    InvalidEvent,
    PatientEnrolled,
    PatientEnrolledData,
    SessionMissed,
    SessionMissedData,
    Substance,
    ToxicologyResulted,
    ToxicologyResultedData,
    WeeklyPlan,
    decode_event,
    encode_event,
    new_event,
)
from iopcare.contract.examples import (
    EXAMPLE_DATA,
    EXAMPLE_PATIENT,
    EXAMPLE_SOURCE,
    EXAMPLE_TIME,
    example_event,
)

ALL_TYPES = list(EVENT_TYPES)
MARKER = "SECRET-NAME-Jane"


def kinds(detail: str) -> str:
    """A detail without the validator's explanations in brackets: where and which kind only."""
    return "; ".join(part.split(" (", 1)[0] for part in detail.split("; "))


def envelope(event_type: str = "iop.checkin.submitted", **overrides: Any) -> dict[str, Any]:
    """A valid event of `event_type` in JSON shape, with top-level fields overridden."""
    doc: dict[str, Any] = {
        "specversion": "1.0",
        "id": "evt-0001",
        "source": EXAMPLE_SOURCE,
        "type": event_type,
        "time": "2024-06-03T17:30:00Z",
        "subject": EXAMPLE_PATIENT,
        "datacontenttype": "application/json",
        "data": json.loads(json.dumps(EXAMPLE_DATA[event_type])),
    }
    doc.update(overrides)
    return doc


def raw(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def rejection(message: bytes, **kwargs: Any) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        decode_event(message, **kwargs)
    return caught.value


# --- the catalogue -----------------------------------------------------------------------------


def test_every_event_type_has_an_example() -> None:
    assert list(EXAMPLE_DATA) == ALL_TYPES


def test_event_types_are_exactly_the_inbound_union() -> None:
    union = get_args(InboundEvent)[0]
    assert set(get_args(union)) == set(EVENT_TYPES.values())
    for event_type, cls in EVENT_TYPES.items():
        assert cls.model_fields["type"].default == event_type


def test_event_types_are_dotted_and_namespaced() -> None:
    assert len(ALL_TYPES) == 18
    assert all(t.startswith("iop.") and t == t.lower() for t in ALL_TYPES)


# --- valid events, per type --------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_example_round_trips_through_the_wire(event_type: str) -> None:
    event = example_event(event_type)
    decoded = decode_event(encode_event(event), key=EXAMPLE_PATIENT.encode())
    assert decoded == event
    assert type(decoded) is EVENT_TYPES[event_type]


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_producer_json_decodes_to_the_event_class(event_type: str) -> None:
    event = decode_event(raw(envelope(event_type)), key=EXAMPLE_PATIENT)
    assert type(event) is EVENT_TYPES[event_type]
    assert event.idempotency_key == (EXAMPLE_SOURCE, "evt-0001")
    assert event.patient_id == EXAMPLE_PATIENT


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_datacontenttype_may_be_omitted(event_type: str) -> None:
    doc = envelope(event_type)
    del doc["datacontenttype"]
    assert decode_event(raw(doc)).datacontenttype == "application/json"


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_encoding_is_compact_and_deterministic(event_type: str) -> None:
    event = example_event(event_type)
    encoded = encode_event(event)
    assert encoded == encode_event(decode_event(encoded))
    assert b"\n" not in encoded and b'", "' not in encoded


# --- invalid events, per type ------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_extra_field_in_data_is_a_schema_violation(event_type: str) -> None:
    doc = envelope(event_type)
    doc["data"]["patient_name"] = MARKER
    error = rejection(raw(doc))
    assert error.reason == "schema_violation"
    assert kinds(error.detail) == "data.patient_name: extra_forbidden"


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_extra_top_level_field_is_a_schema_violation(event_type: str) -> None:
    error = rejection(raw(envelope(event_type, comment="called her mother")))
    assert error.reason == "schema_violation"
    assert kinds(error.detail) == "comment: extra_forbidden"


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_a_traceparent_is_carried_and_an_absent_one_stays_absent(event_type: str) -> None:
    traced = decode_event(raw(envelope(event_type, traceparent=TRACEPARENT)))
    assert traced.traceparent == TRACEPARENT
    assert json.loads(encode_event(traced))["traceparent"] == TRACEPARENT
    plain = decode_event(raw(envelope(event_type)))
    assert plain.traceparent is None and "traceparent" not in json.loads(encode_event(plain))


@pytest.mark.parametrize(
    "bad",
    [
        "00-abc",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # version 00 is lower-case hex
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        TRACEPARENT + " ",
    ],
)
def test_a_malformed_traceparent_is_a_schema_violation(bad: str) -> None:
    error = rejection(raw(envelope("iop.checkin.submitted", traceparent=bad)))
    assert (error.reason, kinds(error.detail)) == ("schema_violation", "traceparent: string_pattern_mismatch")


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_naive_time_is_a_schema_violation(event_type: str) -> None:
    error = rejection(raw(envelope(event_type, time="2024-06-03T17:30:00")))
    assert (error.reason, kinds(error.detail)) == ("schema_violation", "time: datetime_format")


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_patient_id_that_looks_like_a_name_is_rejected(event_type: str) -> None:
    error = rejection(raw(envelope(event_type, subject="Jane Doe")))
    assert (error.reason, kinds(error.detail)) == ("schema_violation", "subject: string_pattern_mismatch")


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_every_missing_required_data_field_is_reported(event_type: str) -> None:
    data_model = EVENT_TYPES[event_type].model_fields["data"].annotation
    assert data_model is not None
    required = [name for name, field in data_model.model_fields.items() if field.is_required()]
    assert required, "every event type has at least one required data field"
    for name in required:
        doc = envelope(event_type)
        del doc["data"][name]
        error = rejection(raw(doc))
        assert (error.reason, kinds(error.detail)) == ("schema_violation", f"data.{name}: missing")


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_key_other_than_subject_is_a_key_mismatch(event_type: str) -> None:
    error = rejection(raw(envelope(event_type)), key=b"pt-someone-else")
    assert error.reason == "key_mismatch"


@pytest.mark.parametrize("event_type", ALL_TYPES)
def test_unknown_type_is_not_validated_as_another_type(event_type: str) -> None:
    error = rejection(raw(envelope(event_type, type=event_type + ".v2")))
    assert error.reason == "unknown_type"


# --- invalid events, by check ------------------------------------------------------------------


@pytest.mark.parametrize("craving", [-1, 11])
def test_craving_outside_0_to_10_is_a_schema_violation(craving: int) -> None:
    doc = envelope()
    doc["data"]["craving"] = craving
    error = rejection(raw(doc))
    assert error.reason == "schema_violation"
    assert error.detail.startswith("data.craving: ")


@pytest.mark.parametrize(
    ("field", "value", "error_type"),
    [
        ("craving", "5", "int_type"),
        ("craving", 5.5, "int_type"),
        ("substance_use_reported", 1, "bool_type"),
        ("substance_use_reported", "true", "bool_type"),
        ("channel", "email", "literal_error"),
    ],
)
def test_validation_is_strict_about_json_types(field: str, value: Any, error_type: str) -> None:
    doc = envelope()
    doc["data"][field] = value
    error = rejection(raw(doc))
    assert (error.reason, kinds(error.detail)) == ("schema_violation", f"data.{field}: {error_type}")


def test_integer_is_accepted_where_hours_are_a_number() -> None:
    doc = envelope()
    doc["data"]["sleep_hours"] = 7
    event = decode_event(raw(doc))
    assert isinstance(event, CheckInSubmitted)
    assert event.data.sleep_hours == 7.0


@pytest.mark.parametrize(
    "when", ["1970-01-01T00:00:00Z", "2100-01-01T00:00:00Z", "2204-06-03T17:30:00+02:00"]
)
def test_absurd_years_are_rejected(when: str) -> None:
    error = rejection(raw(envelope(time=when)))
    assert (error.reason, kinds(error.detail)) == ("schema_violation", "time: datetime_format")


def test_absurd_dates_in_data_are_rejected() -> None:
    doc = envelope("iop.patient.discharged")
    doc["data"]["discharged_on"] = "1900-01-01"
    error = rejection(raw(doc))
    assert (error.reason, kinds(error.detail)) == (
        "schema_violation",
        "data.discharged_on: date_format",
    )


def test_unix_timestamp_is_not_a_time() -> None:
    error = rejection(raw(envelope(time=1717435800)))
    assert error.reason == "schema_violation"


@pytest.mark.parametrize("subject", ["pt", "-pt-1", "pt 12", "pt-12\n", "jane@example.org", "x" * 65])
def test_patient_id_shape_is_enforced(subject: str) -> None:
    assert rejection(raw(envelope(subject=subject))).reason == "schema_violation"


@pytest.mark.parametrize("event_id", ["", "evt 1", "evt-\u00e9", "x" * 129])
def test_event_id_must_be_printable_ascii_without_spaces(event_id: str) -> None:
    assert rejection(raw(envelope(id=event_id))).reason == "schema_violation"


@pytest.mark.parametrize("source", ["", "has space", "x" * 257])
def test_source_must_be_a_uri_reference(source: str) -> None:
    assert rejection(raw(envelope(source=source))).reason == "schema_violation"


def test_wrong_specversion_is_a_schema_violation() -> None:
    error = rejection(raw(envelope(specversion="0.3")))
    assert (error.reason, kinds(error.detail)) == ("schema_violation", "specversion: literal_error")


def test_missing_envelope_field_is_reported() -> None:
    doc = envelope()
    del doc["time"]
    assert kinds(rejection(raw(doc)).detail) == "time: missing"


def test_missing_type_is_an_unknown_type() -> None:
    doc = envelope()
    del doc["type"]
    assert rejection(raw(doc)).reason == "unknown_type"


def test_non_string_type_is_an_unknown_type() -> None:
    assert rejection(raw(envelope(type=["iop.checkin.submitted"]))).reason == "unknown_type"


def test_invalid_json() -> None:
    error = rejection(b'{"specversion": "1.0",')
    assert error.reason == "invalid_json"


def test_non_finite_number_is_rejected() -> None:
    message = raw(envelope()).replace(b'"sleep_hours": 5.5', b'"sleep_hours": NaN')
    assert b"NaN" in message
    assert rejection(message).reason in {"invalid_json", "schema_violation"}


@pytest.mark.parametrize("text", [b"NaN", b"-Infinity", b"[Infinity]"])
def test_nan_and_infinity_are_invalid_json_not_a_json_number(text: bytes) -> None:
    assert rejection(text).reason == "invalid_json"


def test_invalid_utf8_is_undecodable() -> None:
    message = raw(envelope()).replace(b"pt-7f3a9c", b"pt-7f3a\xff\xfe")
    error = rejection(message)
    assert error.reason == "undecodable"


@pytest.mark.parametrize("doc", [[], ["iop.checkin.submitted"], "event", 42, None, True])
def test_json_that_is_not_an_object(doc: Any) -> None:
    assert rejection(raw(doc)).reason == "not_an_object"


def test_oversized_message_is_rejected_before_parsing() -> None:
    message = b"\xff" * 300_000  # not even UTF-8: size is checked first
    error = rejection(message)
    assert error.reason == "oversized"


def test_size_limit_is_inclusive_and_configurable() -> None:
    message = raw(envelope())
    assert decode_event(message, max_bytes=len(message))
    assert rejection(message, max_bytes=len(message) - 1).reason == "oversized"


def test_key_may_be_str_bytes_or_absent() -> None:
    message = raw(envelope())
    assert decode_event(message, key=EXAMPLE_PATIENT) == decode_event(message, key=EXAMPLE_PATIENT.encode())
    assert decode_event(message, key=None).subject == EXAMPLE_PATIENT


def test_invalid_event_survives_pickling() -> None:
    error = rejection(b"[]")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.reason, copy.detail, str(copy)) == (error.reason, error.detail, str(error))


def test_undecodable_key_is_a_key_mismatch() -> None:
    assert rejection(raw(envelope()), key=b"\xff\xfe").reason == "key_mismatch"


def test_schema_violation_lists_a_bounded_number_of_errors() -> None:
    doc = envelope()
    doc["data"] = {f"field_{n}": n for n in range(20)}
    detail = rejection(raw(doc)).detail
    assert detail.count(";") == 5
    assert detail.endswith("more")


# --- PHI never reaches the detail --------------------------------------------------------------


def _with_marker_everywhere_wrong() -> list[bytes]:
    messages = []
    for field in ["craving", "channel", "sleep_hours", "phq9_item9"]:
        doc = envelope()
        doc["data"][field] = MARKER
        messages.append(raw(doc))
    messages.append(raw(envelope(subject=MARKER + " Doe")))
    messages.append(raw(envelope(id=MARKER + " 1")))
    messages.append(raw(envelope(type=MARKER)))
    messages.append(raw(envelope(type=123)))
    messages.append(raw(envelope(time=MARKER)))
    messages.append(raw(envelope(**{MARKER: "x"})))
    messages.append(raw(envelope(data={MARKER: MARKER})))
    messages.append(raw([MARKER]))
    messages.append(b'{"name": "' + MARKER.encode() + b'", ')
    messages.append(b'{"name": "' + MARKER.encode() + b'\xff"}')
    return messages


@pytest.mark.parametrize("message", _with_marker_everywhere_wrong())
def test_detail_never_echoes_a_value(message: bytes) -> None:
    error = rejection(message, key=b"pt-other")
    assert "Jane" not in error.detail
    assert "Jane" not in str(error)
    assert "Jane" not in "".join(traceback.format_exception(error))


def test_extra_key_that_is_not_a_field_name_is_not_echoed() -> None:
    doc = envelope()
    doc["data"]["Jane Doe, 1980-02-03"] = 1
    assert kinds(rejection(raw(doc)).detail) == "data.<key>: extra_forbidden"


def test_validation_errors_do_not_carry_input() -> None:
    doc = envelope()
    doc["data"]["craving"] = MARKER
    with pytest.raises(ValidationError) as caught:
        CheckInSubmitted.model_validate_json(raw(doc))
    assert MARKER not in str(caught.value)


# --- behaviour of individual models ------------------------------------------------------------


def test_unexpected_positives_exclude_prescribed_substances() -> None:
    data = ToxicologyResultedData.model_validate(EXAMPLE_DATA["iop.toxicology.resulted"])
    assert data.substances_positive == {"buprenorphine", "cannabis"}
    assert data.unexpected_positives() == {"cannabis"}


def test_negative_screen_has_no_unexpected_positives() -> None:
    data = ToxicologyResultedData.model_validate(
        {"specimen_id": "spec-1", "collected_at": "2024-06-06T10:00:00Z", "substances_positive": []}
    )
    assert data.unexpected_positives() == frozenset()


def test_unknown_substance_is_rejected() -> None:
    doc = envelope("iop.toxicology.resulted")
    doc["data"]["substances_positive"] = ["cocaine", "Jane's pills"]
    error = rejection(raw(doc))
    # An entry's number is its place in the set as validated, not in the array sent.
    assert error.reason == "schema_violation"
    assert re.fullmatch(r"data\.substances_positive\.[01]: literal_error", kinds(error.detail))


def test_sets_are_encoded_sorted() -> None:
    doc = envelope("iop.toxicology.resulted")
    doc["data"]["substances_positive"] = ["opiate", "cocaine", "alcohol"]
    encoded = json.loads(encode_event(decode_event(raw(doc))))
    assert encoded["data"]["substances_positive"] == ["alcohol", "cocaine", "opiate"]


def test_a_set_with_an_entry_twice_is_refused_as_its_schema_refuses_it() -> None:
    doc = envelope("iop.toxicology.resulted")
    doc["data"]["substances_positive"] = ["opiate", "cocaine", "cocaine"]
    error = rejection(raw(doc))
    assert (error.reason, error.detail) == (
        "schema_violation",
        "data.substances_positive: set_repeats (an entry appears twice)",
    )


def test_consent_scope_must_not_be_empty() -> None:
    doc = envelope("iop.consent.revoked")
    doc["data"]["scope"] = []
    assert kinds(rejection(raw(doc)).detail) == "data.scope: too_short"


def test_consent_must_expire_after_it_is_granted() -> None:
    doc = envelope("iop.consent.granted", time="2025-07-01T00:00:00Z")
    error = rejection(raw(doc))
    assert (error.reason, kinds(error.detail)) == ("schema_violation", "<root>: consent_expires_before_grant")


def test_enrolment_defaults_follow_the_typical_iop_plan() -> None:
    data = PatientEnrolledData.model_validate(
        {
            "level_of_care": "2.1",
            "program_start": "2024-06-03",
            "counselor_id": "staff-c12",
            "supervisor_id": "staff-s03",
        }
    )
    assert data.weekly_plan == WeeklyPlan(
        group_sessions=4, individual_sessions=1, hours=9, fellowship_meetings=0
    )
    assert (data.planned_length_days, data.population) == (90, "adult")


@pytest.mark.parametrize("level", ["2.1", "1", "0.5", "4"])
def test_level_of_care_accepts_asam_levels(level: str) -> None:
    doc = envelope("iop.level_of_care.changed")
    doc["data"]["to_level"] = level
    assert decode_event(raw(doc))


@pytest.mark.parametrize("level", ["IOP", "2.10", "21", ""])
def test_level_of_care_rejects_other_shapes(level: str) -> None:
    doc = envelope("iop.level_of_care.changed")
    doc["data"]["to_level"] = level
    assert kinds(rejection(raw(doc)).detail) == "data.to_level: string_pattern_mismatch"


def test_events_are_immutable() -> None:
    event = example_event("iop.checkin.submitted")
    with pytest.raises(ValidationError):
        event.subject = "pt-other"  # type: ignore[misc]


def test_new_event_fills_the_envelope() -> None:
    before = datetime.now(UTC)
    event = new_event(
        SessionMissed,
        subject="pt-123",
        source="urn:iop:scheduler",
        data=EXAMPLE_DATA["iop.session.missed"],
    )
    assert event.type == "iop.session.missed"
    assert event.specversion == "1.0"
    assert len(event.id) == 36
    assert before <= event.time <= datetime.now(UTC)
    assert isinstance(event.data, SessionMissedData)
    assert event.data.reason_code == "transport"


def test_new_event_accepts_a_data_model_and_keeps_given_id_and_time() -> None:
    data = CheckInSubmittedData(
        craving=2, mood=7, sleep_hours=8, substance_use_reported=False, safety_concern=False
    )
    event = new_event(
        CheckInSubmitted, subject="pt-123", source="/app", data=data, time=EXAMPLE_TIME, id="evt-9"
    )
    assert (event.id, event.time, event.data) == ("evt-9", EXAMPLE_TIME, data)


def test_new_event_rejects_a_naive_time() -> None:
    with pytest.raises(ValidationError):
        new_event(
            PatientEnrolled,
            subject="pt-123",
            source="/ehr",
            data=EXAMPLE_DATA["iop.patient.enrolled"],
            time=datetime(2024, 6, 3, 9, 0),
        )


def test_dead_letter_headers_round_trip_through_kafka_headers() -> None:
    error = rejection(b"[]")
    headers = DeadLetterHeaders.for_failure(
        error, topic="iop.events.v1", partition=3, offset=1234, failed_at=EXAMPLE_TIME
    )
    kafka = headers.to_kafka()
    assert dict(kafka) == {
        "iopcare-dlq-reason": b"not_an_object",
        "iopcare-dlq-detail": error.detail.encode(),
        "iopcare-dlq-source-topic": b"iop.events.v1",
        "iopcare-dlq-source-partition": b"3",
        "iopcare-dlq-source-offset": b"1234",
        "iopcare-dlq-failed-at": b"2024-06-03T17:30:00Z",
    }
    assert DeadLetterHeaders.from_kafka([("traceparent", b"00-1"), *kafka]) == headers


# --- property-based round trips ----------------------------------------------------------------

identifiers = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{2,63}", fullmatch=True)
instants = st.datetimes(
    min_value=datetime(2000, 1, 2),
    max_value=datetime(2099, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-4)), timezone(timedelta(hours=5, minutes=30))]),
)
days = st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31))


def envelopes(event_cls: type[Any], data: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.builds(
        new_event,
        st.just(event_cls),
        subject=identifiers,
        source=st.from_regex(r"[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]{1,256}", fullmatch=True),
        data=data,
        time=instants,
        id=st.from_regex(r"[!-~]{1,128}", fullmatch=True),
    )


checkins = st.builds(
    CheckInSubmittedData,
    craving=st.integers(0, 10),
    mood=st.integers(0, 10),
    sleep_hours=st.floats(0, 24),
    substance_use_reported=st.booleans(),
    safety_concern=st.booleans(),
    phq9_item9=st.none() | st.integers(0, 3),
    cssrs_positive=st.none() | st.booleans(),
    channel=st.sampled_from(["app", "sms", "in_person", "phone"]),
)
all_substances = st.sampled_from(get_args(Substance))
toxicology = st.builds(
    ToxicologyResultedData,
    specimen_id=identifiers,
    collected_at=instants,
    substances_positive=st.frozensets(all_substances),
    prescribed_substances=st.frozensets(all_substances, max_size=3),
    random=st.booleans(),
)
missed_sessions = st.builds(
    SessionMissedData,
    session_id=identifiers,
    kind=st.sampled_from(["group", "individual", "family"]),
    starts_at=instants,
    duration_minutes=st.integers(1, 600),
    excused=st.booleans(),
    reason_code=st.none()
    | st.sampled_from(["illness", "work", "transport", "childcare", "no_contact", "other"]),
)
enrolments = st.builds(
    PatientEnrolledData,
    level_of_care=st.from_regex(r"[0-9](\.[0-9])?", fullmatch=True),
    program_start=days,
    planned_length_days=st.integers(1, 730),
    weekly_plan=st.builds(
        WeeklyPlan,
        group_sessions=st.integers(0, 21),
        individual_sessions=st.integers(0, 14),
        hours=st.floats(0, 80),
        fellowship_meetings=st.integers(0, 21),
    ),
    counselor_id=identifiers,
    supervisor_id=identifiers,
    population=st.sampled_from(["adult", "adolescent"]),
)


@settings(max_examples=200)
@given(envelopes(CheckInSubmitted, checkins))
def test_any_checkin_round_trips(event: CheckInSubmitted) -> None:
    assert decode_event(encode_event(event), key=event.subject) == event


@given(envelopes(ToxicologyResulted, toxicology))
def test_any_toxicology_result_round_trips_with_sorted_sets(event: ToxicologyResulted) -> None:
    encoded = encode_event(event)
    assert decode_event(encoded) == event
    wire = json.loads(encoded)["data"]["substances_positive"]
    assert wire == sorted(event.data.substances_positive)


@given(envelopes(SessionMissed, missed_sessions))
def test_any_missed_session_round_trips(event: SessionMissed) -> None:
    assert decode_event(encode_event(event)) == event


@given(envelopes(PatientEnrolled, enrolments))
def test_any_enrolment_round_trips(event: PatientEnrolled) -> None:
    assert decode_event(encode_event(event)) == event


def test_a_schema_violation_keeps_the_validators_explanation_without_the_input() -> None:
    doc = json.loads(encode_event(example_event("iop.checkin.submitted")))
    doc["data"]["craving"] = 97
    error = rejection(json.dumps(doc).encode())
    assert error.detail == "data.craving: less_than_equal (Input should be less than or equal to 10)"
    assert "97" not in error.detail

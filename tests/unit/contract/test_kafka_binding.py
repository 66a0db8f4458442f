"""The CloudEvents Kafka binding: a record in binary mode reads as the same event as in structured
mode, built with the CloudEvents SDK as a producer that is not ours would build it."""

from __future__ import annotations

import json

import pytest
from cloudevents.http import CloudEvent as SdkEvent
from cloudevents.kafka import to_binary, to_structured

from iopcare.contract import InvalidEvent, decode_event, encode_event
from iopcare.contract.examples import example_event
from iopcare.contract.kafka_binding import structured_headers, structured_value


def _sdk_event(**extra: str) -> SdkEvent:
    ours = json.loads(encode_event(example_event("iop.checkin.submitted")))
    data = ours.pop("data")
    ours.pop("datacontenttype")
    return SdkEvent(
        {**ours, "datacontenttype": "application/json", "partitionkey": ours["subject"], **extra}, data
    )


def _pairs(headers: dict[str, bytes]) -> list[tuple[str, bytes]]:
    return list(headers.items())


def test_binary_and_structured_records_of_the_sdk_read_as_the_same_event() -> None:
    event = _sdk_event(tracestate="rojo=00f067aa0ba902b7")
    binary, structured = to_binary(event), to_structured(event)
    assert "ce_specversion" in binary.headers and binary.headers["content-type"] == b"application/json"
    from_binary = decode_event(structured_value(binary.value, _pairs(binary.headers)), key=binary.key)
    from_structured = decode_event(
        structured_value(structured.value, _pairs(structured.headers)), key=structured.key
    )
    # Binary mode carries the partition key as the record key, structured mode in the document too.
    assert from_binary.partitionkey is None and from_structured.partitionkey == from_structured.subject
    assert from_structured.model_copy(update={"partitionkey": None}) == from_binary
    assert from_binary == example_event("iop.checkin.submitted").model_copy(
        update={"tracestate": "rojo=00f067aa0ba902b7"}
    )


def test_a_record_without_content_type_is_structured_as_before_the_binding() -> None:
    raw = encode_event(example_event("iop.checkin.submitted"))
    assert structured_value(raw, []) == raw
    assert structured_value(raw, structured_headers()) == raw


@pytest.mark.parametrize(
    ("headers", "value", "reason", "detail"),
    [
        ([("content-type", b"application/avro")], b"{}", "undecodable", "content-type: neither"),
        ([("content-type", b"text/plain")], b"{}", "undecodable", "content-type: neither"),
        (
            [("ce_specversion", b"1.0"), ("content-type", b"text/plain")],
            b"hi",
            "schema_violation",
            "JSON data",
        ),
        ([("ce_specversion", b"1.0"), ("ce_data", b"{}")], b"{}", "schema_violation", "ce_data: the data"),
        ([("ce_specversion", b"1.0"), ("ce_type", b"\xff")], b"{}", "undecodable", "header ce_type"),
        ([("ce_specversion", b"1.0")], b"{not json", "invalid_json", "data: "),
    ],
)
def test_records_in_neither_mode_are_refused_with_the_reason(
    headers: list[tuple[str, bytes]], value: bytes, reason: str, detail: str
) -> None:
    with pytest.raises(InvalidEvent) as refused:
        structured_value(value, headers)
    assert refused.value.reason == reason
    assert detail in refused.value.detail


def test_a_binary_record_breaking_the_contract_is_refused_like_a_structured_one() -> None:
    binary = to_binary(_sdk_event())
    headers = {**binary.headers, "ce_time": b"2026-03-04 19:30:00"}  # not RFC 3339
    with pytest.raises(InvalidEvent) as refused:
        decode_event(structured_value(binary.value, _pairs(headers)), key=binary.key)
    assert refused.value.reason == "schema_violation" and "time" in refused.value.detail


def test_a_partition_key_that_is_not_the_patient_is_a_key_mismatch() -> None:
    # Binary mode: the SDK makes the partition key the record key.
    binary = to_binary(_sdk_event(partitionkey="pt-someone-else"))
    with pytest.raises(InvalidEvent) as refused:
        decode_event(structured_value(binary.value, _pairs(binary.headers)), key=binary.key)
    assert (refused.value.reason, refused.value.detail) == (
        "key_mismatch",
        "message key differs from subject",
    )
    # Structured mode: the attribute is in the document.
    document = json.loads(to_structured(_sdk_event()).value) | {"partitionkey": "pt-someone-else"}
    with pytest.raises(InvalidEvent) as refused:
        decode_event(json.dumps(document).encode())
    assert (refused.value.reason, refused.value.detail) == (
        "key_mismatch",
        "partitionkey differs from subject",
    )

"""What goes to the dead-letter topic for a rejected record: its bytes, never more than fits."""

from __future__ import annotations

from iopcare.contract import DEFAULT_MAX_BYTES, DeadLetterHeaders
from iopcare.processor.app import dead_letter_message
from iopcare.store.events import RejectedRecord


def _rejected(payload: bytes) -> RejectedRecord:
    return RejectedRecord("oversized", "too big", "iop.events.v1", 3, 17, b"p-1", payload)


def test_a_1mb_payload_goes_to_the_topic_cut_to_the_contract_limit_with_its_size() -> None:
    key, value, headers = dead_letter_message(_rejected(b"x" * 1_100_000))
    assert key == b"p-1"
    assert value == b"x" * DEFAULT_MAX_BYTES
    read = DeadLetterHeaders.from_kafka(headers)
    assert read.original_bytes == "1100000"
    assert (read.source_partition, read.source_offset) == ("3", "17")


def test_a_payload_within_the_limit_goes_whole_without_a_size_header() -> None:
    _, value, headers = dead_letter_message(_rejected(b'{"not": "an event"}'))
    assert value == b'{"not": "an event"}'
    assert "iopcare-dlq-original-bytes" not in dict(headers)
    assert DeadLetterHeaders.from_kafka(headers).original_bytes is None

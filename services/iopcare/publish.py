"""Publisher SDK for clinic systems, built on kafka-python.

Every event is validated against the contract before it is sent, keyed by the pseudonymous patient
id (so all of a patient's events share a partition, in order), and acknowledged by all in-sync
replicas before it counts as sent::

    from iopcare.publish import EventPublisher
    from iopcare.contract import CheckInSubmitted, new_event

    with EventPublisher("kafka:9092") as publisher:
        event = new_event(CheckInSubmitted, subject="p-7f3a", source="clinic-app", data={...})
        sent = publisher.publish(event)
        print(sent.partition, sent.offset)

``publish_ndjson`` sends a newline-delimited file, reporting each invalid line with its number and
reason and sending the rest.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from iopcare.contract import (
    CloudEvent,
    InboundEvent,
    InvalidEvent,
    check_event_time,
    decode_event,
    encode_event,
)
from iopcare.contract.kafka_binding import structured_headers


class PublishError(RuntimeError):
    """The broker could not be reached, or did not acknowledge an event in time."""


@dataclass(frozen=True)
class SentEvent:
    """An event acknowledged by the broker."""

    event_id: str
    patient_id: str
    event_type: str
    partition: int
    offset: int


@dataclass(frozen=True)
class InvalidLine:
    """A line of an NDJSON file that failed validation and was not sent."""

    line_number: int
    reason: str
    detail: str


@dataclass
class PublishReport:
    """What a bulk publish did: counts only, so a million-line file costs no memory per event."""

    sent: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_partition: Counter[int] = field(default_factory=Counter)
    invalid: list[InvalidLine] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # delivery errors (event id: error)
    elapsed_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.invalid and not self.failed


_HEADERS = structured_headers()  # content-type: application/cloudevents+json


def _validated(event: CloudEvent[Any] | Mapping[str, Any] | bytes) -> tuple[InboundEvent, bytes]:
    """Validate by decoding the exact bytes that will go on the wire, and refuse an event the
    processor would dead-letter for its time (``future_time``: later than now plus the skew)."""
    if isinstance(event, CloudEvent):
        payload = encode_event(event)
    elif isinstance(event, bytes):
        payload = event
    else:
        payload = json.dumps(dict(event), separators=(",", ":")).encode()
    decoded = decode_event(payload)
    check_event_time(decoded, datetime.now(UTC))
    return decoded, encode_event(decoded)


class EventPublisher:
    """Validates, keys by patient, sends, waits for acknowledgement."""

    def __init__(
        self,
        bootstrap_servers: str,
        topic: str = "iop.events.v1",
        *,
        timeout_seconds: float = 30.0,
        client_id: str = "iopcare-publisher",
        **producer_config: Any,
    ) -> None:
        self.topic = topic
        self.timeout_seconds = timeout_seconds
        config: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "client_id": client_id,
            "acks": "all",
            "linger_ms": 5,
            "retries": 5,
            # Ordering per patient must survive retries.
            "max_in_flight_requests_per_connection": 1,
            # How long to wait for a first broker to answer (IOPCARE_PUBLISH_TIMEOUT_SECONDS, as for
            # each acknowledgement), then PublishError.
            "bootstrap_timeout_ms": int(timeout_seconds * 1000),
        }
        config.update(producer_config)
        try:
            self._producer = KafkaProducer(**config)
        except KafkaError as exc:  # no broker answered within the client's bootstrap timeout
            raise PublishError(
                f"the broker at {bootstrap_servers} is not reachable ({type(exc).__name__})"
            ) from exc

    def __enter__(self) -> EventPublisher:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush what is buffered and close the connection."""
        self._producer.flush(timeout=self.timeout_seconds)
        self._producer.close(timeout=self.timeout_seconds)

    def publish(self, event: CloudEvent[Any] | Mapping[str, Any] | bytes) -> SentEvent:
        """Validate one event, send it and wait for the acknowledgement.

        Raises :class:`iopcare.contract.InvalidEvent` before sending anything if the event breaks the
        contract, and :class:`PublishError` if the broker does not acknowledge it in time.
        """
        decoded, payload = _validated(event)
        future = self._producer.send(
            self.topic, value=payload, key=decoded.subject.encode(), headers=_HEADERS
        )
        try:
            metadata = future.get(timeout=self.timeout_seconds)
        except KafkaError as exc:
            raise PublishError(f"event {decoded.id} was not acknowledged: {exc}") from exc
        return SentEvent(decoded.id, decoded.subject, decoded.type, metadata.partition, metadata.offset)

    def publish_all(
        self,
        events: Iterable[tuple[int, bytes]],
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> PublishReport:
        """Validate and send numbered raw events (line number, bytes), pipelined, then wait for all
        acknowledgements. Invalid ones are reported by number and not sent."""
        report = PublishReport()
        lock = threading.Lock()
        started = time.monotonic()

        def on_sent(event_type: str, metadata: Any) -> None:
            with lock:
                report.sent += 1
                report.by_type[event_type] += 1
                report.by_partition[metadata.partition] += 1

        def on_failed(event_id: str, exc: BaseException) -> None:
            with lock:
                report.failed.append(f"{event_id}: {exc}")

        for count, (number, raw) in enumerate(events, start=1):
            try:
                decoded, payload = _validated(raw)
            except InvalidEvent as exc:
                report.invalid.append(InvalidLine(number, exc.reason, exc.detail))
            else:
                future = self._producer.send(
                    self.topic, value=payload, key=decoded.subject.encode(), headers=_HEADERS
                )
                future.add_callback(lambda md, t=decoded.type: on_sent(t, md))
                future.add_errback(lambda exc, i=decoded.id: on_failed(i, exc))
            if on_progress is not None:
                on_progress(count)
        self._producer.flush(timeout=self.timeout_seconds)
        report.elapsed_seconds = time.monotonic() - started
        return report


def numbered_lines(stream: IO[bytes]) -> Iterable[tuple[int, bytes]]:
    """(line number, bytes without the newline) for each non-blank line of an NDJSON stream."""
    for number, line in enumerate(stream, start=1):
        stripped = line.rstrip(b"\r\n")
        if stripped.strip():
            yield number, stripped

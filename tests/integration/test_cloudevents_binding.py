"""The CloudEvents Kafka binding end to end: records made by the CloudEvents SDK, in binary and in
structured mode, through a real worker; what iopcare publishes read back by the same SDK."""

from __future__ import annotations

import json

import asyncpg
import pytest
from cloudevents.http import CloudEvent as SdkEvent
from cloudevents.kafka import KafkaMessage, from_structured, to_binary, to_structured
from kafka import KafkaProducer

from iopcare.contract import EVENT_TYPES, encode_event
from iopcare.contract.examples import example_event
from iopcare.endpoints import Endpoints
from iopcare.publish import EventPublisher
from iopcare.settings import Settings
from tests.integration.workers import WorkerProcess, read_topic, wait_for_count

pytestmark = pytest.mark.integration


def _sdk_events(prefix: str) -> list[SdkEvent]:
    """Every event type as the SDK builds it, for patients of their own."""
    events = []
    for n, event_type in enumerate(EVENT_TYPES):
        ours = json.loads(encode_event(example_event(event_type)))
        data = ours.pop("data")
        ours |= {"id": f"{prefix}-{n}", "subject": f"pt-{prefix}-{n}", "datacontenttype": "application/json"}
        events.append(SdkEvent({**ours, "partitionkey": ours["subject"]}, data))
    return events


def _send(kafka: str, topic: str, messages: list[KafkaMessage]) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    try:
        for m in messages:
            key = m.key.encode() if isinstance(m.key, str) else m.key
            producer.send(topic, key=key, value=m.value, headers=list(m.headers.items()))
        producer.flush()
    finally:
        producer.close()


async def test_sdk_records_in_both_modes_are_applied_and_a_bad_binary_one_is_dead_lettered_whole(
    endpoints: Endpoints, topics: Settings, clean_db: str, worker: WorkerProcess
) -> None:
    binary = [to_binary(e) for e in _sdk_events("bin")]
    structured = [to_structured(e) for e in _sdk_events("str")]
    bad = to_binary(_sdk_events("bad")[0])
    bad_headers = {**bad.headers, "content-type": b"text/plain"}
    _send(endpoints.kafka_bootstrap, topics.events_topic, [*binary, *structured])
    _send(endpoints.kafka_bootstrap, topics.events_topic, [KafkaMessage(bad_headers, bad.key, bad.value)])

    expected = len(binary) + len(structured)
    assert await wait_for_count(clean_db, "SELECT count(*) FROM event_log", expected) == expected
    connection = await asyncpg.connect(clean_db)
    try:
        by_mode = await connection.fetch(
            "SELECT split_part(event_id, '-', 1) AS mode, count(*) FROM event_log GROUP BY 1 ORDER BY 1"
        )
        assert {r["mode"]: r["count"] for r in by_mode} == {"bin": len(binary), "str": len(structured)}
    finally:
        await connection.close()
    assert await wait_for_count(clean_db, "SELECT count(*) FROM dead_letters", 1) == 1

    [dead] = read_topic(endpoints.kafka_bootstrap, topics.dead_letter_topic, 1)
    headers = dict(dead.headers)
    assert headers["iopcare-dlq-reason"] == b"schema_violation"
    # The record's own headers travel with it: fixed, it can be sent again as it was.
    assert headers["ce_specversion"] == b"1.0" and headers["content-type"] == b"text/plain"
    assert dead.value == bad.value


def test_what_iopcare_publishes_is_structured_mode_that_the_sdk_reads(
    endpoints: Endpoints, topics: Settings
) -> None:
    event = example_event("iop.checkin.submitted")
    with EventPublisher(endpoints.kafka_bootstrap, topics.events_topic) as publisher:
        publisher.publish(event)
    [record] = read_topic(endpoints.kafka_bootstrap, topics.events_topic, 1)
    assert dict(record.headers)["content-type"] == b"application/cloudevents+json; charset=utf-8"
    read = from_structured(KafkaMessage(dict(record.headers), record.key, record.value))
    assert (read["id"], read["subject"], read["type"]) == (event.id, event.subject, event.type)

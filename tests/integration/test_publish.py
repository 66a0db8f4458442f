"""The publisher SDK and `iopcare publish` against the real embedded broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from iopcare.contract import EVENT_TYPES, InvalidEvent, decode_event, encode_event
from iopcare.contract.examples import example_event
from iopcare.endpoints import Endpoints
from iopcare.publish import EventPublisher
from iopcare.settings import Settings
from iopcare.topics import ensure_topics

pytestmark = pytest.mark.integration


def _read_back(bootstrap: str, topic: str, expected: int, timeout_ms: int = 15_000) -> list:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=timeout_ms,
    )
    records = []
    try:
        for record in consumer:
            records.append(record)
            if len(records) >= expected:
                break
    finally:
        consumer.close()
    return records


def test_published_event_is_read_back_keyed_by_patient(endpoints: Endpoints, unique_topics: Settings) -> None:
    ensure_topics(endpoints.kafka_bootstrap, unique_topics)
    event = example_event("iop.checkin.submitted")
    with EventPublisher(endpoints.kafka_bootstrap, unique_topics.events_topic) as publisher:
        sent = publisher.publish(event)

    assert sent.event_id == event.id and sent.patient_id == event.subject
    [record] = _read_back(endpoints.kafka_bootstrap, unique_topics.events_topic, 1)
    assert record.key == event.subject.encode()
    assert (record.partition, record.offset) == (sent.partition, sent.offset)
    assert decode_event(record.value, key=record.key) == event


def test_invalid_event_is_refused_before_anything_is_sent(
    endpoints: Endpoints, unique_topics: Settings
) -> None:
    ensure_topics(endpoints.kafka_bootstrap, unique_topics)
    document = json.loads(encode_event(example_event("iop.checkin.submitted")))
    document["data"]["craving"] = 11
    with (
        EventPublisher(endpoints.kafka_bootstrap, unique_topics.events_topic) as publisher,
        pytest.raises(InvalidEvent) as raised,
    ):
        publisher.publish(document)
    assert raised.value.reason == "schema_violation"
    assert _read_back(endpoints.kafka_bootstrap, unique_topics.events_topic, 1, timeout_ms=2_000) == []


def test_all_events_of_one_patient_share_a_partition(endpoints: Endpoints, unique_topics: Settings) -> None:
    ensure_topics(endpoints.kafka_bootstrap, unique_topics)
    with EventPublisher(endpoints.kafka_bootstrap, unique_topics.events_topic) as publisher:
        partitions = {publisher.publish(example_event(t)).partition for t in EVENT_TYPES}
    assert len(partitions) == 1


def _cli_env(endpoints: Endpoints, topics: Settings) -> dict[str, str]:
    return dict(
        os.environ,
        IOPCARE_KAFKA_BOOTSTRAP=endpoints.kafka_bootstrap,
        IOPCARE_DATABASE_URL=endpoints.database_url,
        IOPCARE_EVENTS_TOPIC=topics.events_topic,
    )


def _ndjson_with_bad_lines(path: Path, total: int, bad_lines: dict[int, bytes]) -> None:
    base = json.loads(encode_event(example_event("iop.checkin.submitted")))
    with path.open("wb") as out:
        for number in range(1, total + 1):
            if number in bad_lines:
                out.write(bad_lines[number] + b"\n")
            else:
                document = dict(base, id=f"evt-{number:06d}", subject=f"p-{number % 50:04d}")
                out.write(json.dumps(document).encode() + b"\n")


def test_cli_sends_996_of_1000_and_names_the_4_bad_lines(
    endpoints: Endpoints, unique_topics: Settings, tmp_path: Path
) -> None:
    ensure_topics(endpoints.kafka_bootstrap, unique_topics)
    good = json.loads(encode_event(example_event("iop.checkin.submitted")))
    naive_time = dict(good, id="naive", time="2026-03-04T19:30:00")
    next_year = (datetime.now(UTC) + timedelta(days=365)).isoformat().replace("+00:00", "Z")
    bad = {
        17: b"{not json",
        500: json.dumps(dict(good, type="iop.unknown.thing")).encode(),
        777: json.dumps(dict(good, id="future", time=next_year)).encode(),  # the processor's own rule
        999: json.dumps(naive_time).encode(),
    }
    path = tmp_path / "events.ndjson"
    _ndjson_with_bad_lines(path, 1000, bad)
    env = _cli_env(endpoints, unique_topics)
    result = subprocess.run(
        [sys.executable, "-m", "iopcare.cli", "publish", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )

    assert result.returncode == 1, result.stderr
    assert "sent 996 events" in result.stdout
    assert "line 17: invalid_json" in result.stderr
    assert "line 500: unknown_type" in result.stderr
    assert "line 777: future_time: time: later than now + allowed skew" in result.stderr
    assert "line 999: schema_violation" in result.stderr
    assert sum(line.startswith("line ") for line in result.stderr.splitlines()) == 4
    records = _read_back(endpoints.kafka_bootstrap, unique_topics.events_topic, 996)
    assert len(records) == 996
    assert {r.key for r in records} == {f"p-{n % 50:04d}".encode() for n in range(1, 1001) if n not in bad}


def test_cli_reads_stdin_and_exits_zero_when_all_valid(endpoints: Endpoints, unique_topics: Settings) -> None:
    ensure_topics(endpoints.kafka_bootstrap, unique_topics)
    lines = b"".join(encode_event(example_event(t)) + b"\n" for t in EVENT_TYPES)
    env = _cli_env(endpoints, unique_topics)
    result = subprocess.run(
        [sys.executable, "-m", "iopcare.cli", "publish", "-"],
        input=lines,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert f"sent {len(EVENT_TYPES)} events".encode() in result.stdout

"""Scenario 5 of the reliability suite, the API half: hostile input on the HTTP API (issue 6).

Schemathesis generates requests for every operation of the served OpenAPI document (valid and
invalid ones) with an integrator's and a counselor's token: no answer may be a 5xx, and every answer
must have a documented status and match its documented schema. Then hand-written hostile bodies for
``POST /v1/events`` (the generated bad messages of the broker scenario, a body that is not UTF-8 or
JSON, deeply nested JSON, 1 MB+ events, 501 events): each bad event is rejected with its reason, a bad
body with a problem, and the valid events around them are accepted and on the topic.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from kafka import KafkaConsumer
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from iopcare.api.ratelimit import FailedAuthLimiter
from iopcare.contract import InboundEvent, encode_event
from iopcare.endpoints import Endpoints
from iopcare.settings import Settings
from iopcare.simulation import generate_cohort
from tests.integration.clinic import Clinic
from tests.reliability.hostile import Bad, bad_messages

pytestmark = [pytest.mark.reliability, pytest.mark.integration]

QUICK = os.environ.get("IOPCARE_RELIABILITY_QUICK", "1") != "0"
EXAMPLES = 20 if QUICK else 100  # per operation, token and generation mode
BAD_EVENTS = 200 if QUICK else 2_000
BATCH = 50  # events per request: bad and valid mixed
MAX_MESSAGE_BYTES = 40_000_000


def _checker(strategy: Any, base_url: str, token: str, statuses: dict[str, int]) -> Any:
    """A hypothesis test sending the generated cases with ``token``; counts answers by status."""
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: Any) -> None:
        response = case.call_and_validate(
            base_url=base_url, headers={"Authorization": f"Bearer {token}"}, checks=checks
        )
        statuses[str(response.status_code)] = statuses.get(str(response.status_code), 0) + 1

    return check


def _fuzz(document: dict[str, Any], base_url: str, tokens: dict[str, str]) -> dict[str, int]:
    """Run schemathesis over every operation (blocking: it sends with ``requests``); calls by status."""
    schema = schemathesis.openapi.from_dict(document)
    statuses: dict[str, int] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for who, token in tokens.items():
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                check = _checker(operation.as_strategy(generation_mode=mode), base_url, token, statuses)
                try:
                    check()
                except Unsatisfiable:
                    if mode is GenerationMode.POSITIVE:
                        raise
                    continue  # an operation with nothing to send has no invalid input to make
                except Exception as exc:
                    raise AssertionError(f"{operation.label} as {who} ({mode.value}): {exc}") from exc
    return statuses


async def test_generated_requests_get_no_5xx_and_documented_answers(
    clinic: Clinic, record_property: Any
) -> None:
    document = await (await clinic.client.get("/openapi.json")).json()
    base_url = str(clinic.client.make_url("")).rstrip("/")
    tokens = {"integrator": clinic.tokens["integrator"], "counselor": clinic.tokens["c01"]}
    # Generated requests include bad credentials; guessing is scenario 6's, so the limiter stays open.
    clinic.service.limiter = FailedAuthLimiter(limit=1_000_000, window=60)
    statuses = await asyncio.to_thread(_fuzz, document, base_url, tokens)
    assert not any(status.startswith("5") for status in statuses), statuses
    assert "429" not in statuses and statuses.get("200", 0) >= EXAMPLES, statuses
    assert sum(statuses.values()) >= len(document["paths"]) * EXAMPLES  # the fuzzing did run
    record_property("api_fuzz_requests", sum(statuses.values()))
    record_property("api_fuzz_statuses", json.dumps(dict(sorted(statuses.items()))))


def _consume(bootstrap: str, topic: str) -> list[str]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=5_000,
        fetch_max_bytes=MAX_MESSAGE_BYTES,
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
    )
    try:
        return [json.loads(record.value)["id"] for record in consumer]
    finally:
        consumer.close()


NOT_JSON = object()


def _per_event(bad: Bad) -> Any:
    """The bad message as one element of a JSON array, or NOT_JSON (``null`` is JSON)."""
    try:
        return json.loads(bad.value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return NOT_JSON


async def test_hostile_ingest_bodies_are_rejected_with_reasons_and_valid_events_produced(
    clinic: Clinic, endpoints: Endpoints, unique_topics: Settings, record_property: Any
) -> None:
    rng = random.Random(56)
    start = (datetime.now(UTC) - timedelta(days=30)).date()
    valid: list[InboundEvent] = generate_cohort(3, seed=56, start=start, days=14)
    # A key that is not the subject cannot happen over HTTP: the API keys each event by its subject.
    bad = [b for b in bad_messages(valid, BAD_EVENTS, rng) if b.reason != "key_mismatch"]
    headers = clinic.auth("integrator")
    accepted: list[str] = []
    rejected_by_reason: dict[str, int] = {}
    whole_bodies = 0

    async def post(data: bytes) -> tuple[int, dict[str, Any]]:
        response = await clinic.client.post(
            "/v1/events", headers=headers | {"Content-Type": "application/json"}, data=data
        )
        return response.status, await response.json()

    # Bad events that are JSON go into arrays between valid ones; each must be rejected with its reason.
    items: list[tuple[Any, str | None, str | None]] = []  # (document, expected reason, valid id)
    goods = iter(valid)
    for item in bad:
        document = _per_event(item)
        if document is NOT_JSON:
            status, problem = await post(item.value)  # not UTF-8 or not JSON: the whole body is refused
            assert status == 400 and problem["error"] == "bad_request", (item.reason, status, problem)
            whole_bodies += 1
            continue
        items.append((document, item.reason, None))
        if (event := next(goods, None)) is not None:
            items.append((json.loads(encode_event(event)), None, event.id))
    for first in range(0, len(items), BATCH):
        chunk = items[first : first + BATCH]
        status, body = await post(json.dumps([d for d, _, _ in chunk]).encode())
        assert status in (207, 422), (status, body)
        assert len(body["results"]) == len(chunk)
        for (_, reason, event_id), result in zip(chunk, body["results"], strict=True):
            if event_id is not None:
                assert (result["status"], result["event_id"]) == ("accepted", event_id), result
                accepted.append(event_id)
            else:
                assert result["status"] == "rejected" and result["detail"], (reason, result)
                assert result["reason"] == reason, (reason, result)
                rejected_by_reason[reason] = rejected_by_reason.get(reason, 0) + 1

    # Whole bodies that must be refused with a problem, and nothing produced.
    one = json.loads(encode_event(valid[0]))
    for label, data, expected in [
        ("not utf-8", b'[{"id": "\xff\xfe"}]', 400),
        ("not json", b"<xml>hello</xml>", 400),
        ("empty", b"", 400),
        ("empty array", b"[]", 400),
        ("deeply nested", b"[" * 100_000 + b"]" * 100_000, 400),
        ("501 events", json.dumps([one] * 501).encode(), 413),
    ]:
        status, problem = await post(data)
        assert status == expected and problem["error"] and problem["request_id"], (label, status, problem)
        whole_bodies += 1
    # A deeply nested event inside an otherwise valid batch is that event's rejection alone.
    nested = b'{"a":' * 5_000 + b'"x"' + b"}" * 5_000  # past Python's recursion limit
    data = json.dumps([dict(one, data="NESTED"), one]).encode().replace(b'"NESTED"', nested)
    status, body = await post(data)
    assert status in (207, 400), (status, body)
    if status == 207:
        assert [r["status"] for r in body["results"]] == ["rejected", "accepted"]
        accepted.append(one["id"])

    assert sorted(
        await asyncio.to_thread(_consume, endpoints.kafka_bootstrap, unique_topics.events_topic)
    ) == sorted(accepted)
    record_property("api_hostile_events", sum(rejected_by_reason.values()))
    record_property("api_hostile_whole_bodies", whole_bodies)
    record_property("api_hostile_by_reason", json.dumps(dict(sorted(rejected_by_reason.items()))))
    record_property("api_valid_events_accepted", len(accepted))

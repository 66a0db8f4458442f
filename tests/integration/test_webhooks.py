"""The dispatcher end to end: alert events on a real broker, deliveries in real Postgres, signed POSTs
to a real HTTP receiver on 127.0.0.1. The dispatcher runs in-process (start/stop) with short backoffs."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import asyncpg
import pytest
import standardwebhooks.webhooks
from prometheus_client import REGISTRY
from standardwebhooks import Webhook, WebhookVerificationError

from iopcare.contract import AlertEvent
from iopcare.dispatcher.service import Dispatcher
from iopcare.dispatcher.webhooks.policy import (
    ATTEMPT_HEADER,
    ID_HEADER,
)
from iopcare.dispatcher.webhooks.secrets import new_signing_secret, secret_box
from iopcare.dispatcher.webhooks.store import add_endpoint
from iopcare.embedded.runtime import free_port
from iopcare.endpoints import Endpoints
from iopcare.settings import Settings
from iopcare.tracing import parse_traceparent
from tests.databases import service_url
from tests.integration.webhook_receiver import Receiver, eventually, produce
from tests.unit.dispatcher.factories import COUNSELOR, SUPERVISOR, TITLE, alert

pytestmark = pytest.mark.integration

SECRET = new_signing_secret()
SEALED = secret_box(Settings()).seal(SECRET)  # as stored: encrypted under the run's key
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

StartDispatcher = Callable[..., Awaitable[Dispatcher]]


@pytest.fixture
async def db(clean_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(clean_db, min_size=1, max_size=4)
    assert pool is not None
    yield pool
    await pool.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


@pytest.fixture
def settings(topics: Settings) -> Settings:
    """This test's topics, its own consumer group, and backoffs in tens of milliseconds."""
    return topics.model_copy(
        update={
            "dispatcher_group_id": f"test-dispatcher-{uuid.uuid4().hex[:6]}",
            "dispatcher_web_port": 0,
            # The embedded broker holds a departed member until its session times out: a restarted
            # dispatcher rejoins after about this long.
            "broker_session_timeout_seconds": 3.0,
            "broker_rebalance_timeout_seconds": 2.0,
            "public_url": "https://iop.example.org",
            "webhook_timeout_seconds": 2.0,
            "webhook_retry_base_seconds": 0.05,
            "webhook_retry_max_seconds": 0.2,
            "webhook_max_attempts": 5,
            "webhook_disable_after_failures": 3,
            "webhook_disable_after_seconds": 0.0,
            "webhook_coalesce_seconds": 0.3,
            "webhook_poll_interval_seconds": 0.1,
        }
    )


@pytest.fixture
async def start_dispatcher(
    endpoints: Endpoints, clean_db: str, settings: Settings
) -> AsyncIterator[StartDispatcher]:
    started: list[Dispatcher] = []

    async def start(**overrides: Any) -> Dispatcher:
        dispatcher = Dispatcher(
            settings.model_copy(update=overrides),
            Endpoints(endpoints.kafka_bootstrap, service_url(clean_db, "dispatcher"), embedded=False),
        )
        await dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield start
    for dispatcher in started:
        await dispatcher.stop(grace_seconds=5)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@dataclass
class Harness:
    """What a webhook test drives: the database, the receiving end, dispatchers, the alerts topic."""

    db: asyncpg.Pool
    receiver: Receiver
    start: StartDispatcher
    kafka: str
    alerts_topic: str

    async def publish(self, events: Sequence[AlertEvent], group: str | None) -> None:
        """Alert events on the alerts topic, as the processor's outbox relay publishes them."""
        await produce(self.kafka, self.alerts_topic, events, group)


@pytest.fixture
def hx(
    endpoints: Endpoints,
    settings: Settings,
    db: asyncpg.Pool,
    receiver: Receiver,
    start_dispatcher: StartDispatcher,
) -> Harness:
    return Harness(db, receiver, start_dispatcher, endpoints.kafka_bootstrap, settings.alerts_topic)


async def test_an_alert_event_reaches_the_receiver_signed_with_the_endpoints_secret(hx: Harness) -> None:
    await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url(), SEALED)
    delivered = sample("iopcare_webhook_deliveries_total", outcome="delivered")
    await hx.start()
    event, group = alert("created", severity="critical"), str(uuid.uuid4())
    await hx.publish([event], group)

    await eventually(lambda: hx.receiver.requests, message="no POST reached the receiver")
    [request] = hx.receiver.requests
    Webhook(SECRET).verify(request.body, dict(request.headers))
    payload = json.loads(request.body)
    assert (payload["patient_id"], payload["notification_group"]) == (event.subject, group)
    assert [(a["alert_id"], a["kind"], a["severity"]) for a in payload["alerts"]] == [
        (event.data.alert_id, "created", "critical")
    ]
    assert payload["alerts"][0]["url"] == f"https://iop.example.org/inbox#alert-{event.data.alert_id}"
    assert TITLE.encode() not in request.body
    assert request.headers[ID_HEADER] == payload["id"]
    await eventually(
        lambda: hx.db.fetchval("SELECT state = 'delivered' FROM webhook_deliveries"), message="row not closed"
    )
    row = await hx.db.fetchrow("SELECT attempts, last_status, last_error FROM webhook_deliveries")
    assert (row["attempts"], row["last_status"], row["last_error"]) == (1, 200, None)
    assert sample("iopcare_webhook_deliveries_total", outcome="delivered") == delivered + 1


async def test_the_post_continues_the_trace_of_the_alert_event_in_its_traceparent_header(hx: Harness) -> None:
    await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url(), SEALED)
    await hx.start()
    traced = alert("created").model_copy(update={"traceparent": TRACEPARENT})
    await hx.publish([traced], str(uuid.uuid4()))
    await eventually(lambda: hx.receiver.requests, message="no POST reached the receiver")
    [request] = hx.receiver.requests
    header = parse_traceparent(request.headers["traceparent"])
    cause = parse_traceparent(TRACEPARENT)
    assert header is not None and cause is not None
    assert header.trace_id == cause.trace_id and header.span_id != cause.span_id  # a span of its own
    assert b"traceparent" not in request.body  # the trace travels in the header, not the body


async def test_a_failing_receiver_gets_the_same_delivery_again_until_it_accepts(hx: Harness) -> None:
    hx.receiver.statuses = [503, 500]
    endpoint = await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url(), SEALED)
    retried = sample("iopcare_webhook_deliveries_total", outcome="retried")
    await hx.start()
    await hx.publish([alert("created")], str(uuid.uuid4()))

    await eventually(lambda: len(hx.receiver.requests) == 3, message="three attempts")
    assert len({r.headers[ID_HEADER] for r in hx.receiver.requests}) == 1
    assert len({r.body for r in hx.receiver.requests}) == 1
    assert [r.headers[ATTEMPT_HEADER] for r in hx.receiver.requests] == ["1", "2", "3"]
    for request in hx.receiver.requests:  # each attempt is signed afresh
        Webhook(SECRET).verify(request.body, dict(request.headers))
    await eventually(lambda: hx.db.fetchval("SELECT state = 'delivered' FROM webhook_deliveries"))
    assert await hx.db.fetchval("SELECT attempts FROM webhook_deliveries") == 3
    health = await hx.db.fetchrow(
        "SELECT enabled, consecutive_failures FROM webhook_endpoints WHERE id = $1", endpoint
    )
    assert (health["enabled"], health["consecutive_failures"]) == (True, 0)
    assert sample("iopcare_webhook_deliveries_total", outcome="retried") == retried + 2
    await asyncio.sleep(0.5)
    assert len(hx.receiver.requests) == 3  # nothing after the success


async def test_an_endpoint_that_keeps_failing_is_disabled_with_the_reason(hx: Harness) -> None:
    dead = await add_endpoint(hx.db, "counselor", COUNSELOR, f"http://127.0.0.1:{free_port()}/gone", SEALED)
    alive = await add_endpoint(hx.db, "team", SUPERVISOR, hx.receiver.url("team"), SEALED)
    disabled = sample("iopcare_webhook_endpoints_disabled_total")
    await hx.start()
    await hx.publish([alert("created")], str(uuid.uuid4()))
    await hx.publish([alert("created")], str(uuid.uuid4()))

    async def endpoint_disabled() -> bool:
        return not await hx.db.fetchval("SELECT enabled FROM webhook_endpoints WHERE id = $1", dead)

    await eventually(endpoint_disabled, message="the dead endpoint was not disabled")
    row = await hx.db.fetchrow(
        "SELECT disabled_at, disabled_reason FROM webhook_endpoints WHERE id = $1", dead
    )
    assert row["disabled_at"] is not None
    # The policy disables at 3; the two deliveries fail concurrently, so the failure that disables it
    # may be a later one (whichever of the two records the reason first).
    failures = re.match(r"(\d+) consecutive failed attempts over ", row["disabled_reason"])
    assert failures is not None and int(failures.group(1)) >= 3, row["disabled_reason"]
    assert row["disabled_reason"].endswith("last: ClientConnectorError")
    await eventually(
        lambda: hx.db.fetchval("SELECT count(*) = 0 FROM webhook_deliveries WHERE state = 'pending'"),
        message="pending deliveries left",
    )
    states = await hx.db.fetch(
        "SELECT state, last_error FROM webhook_deliveries WHERE endpoint_id = $1 ORDER BY id", dead
    )
    assert [r["state"] for r in states] == ["failed", "failed"]
    assert {r["last_error"] for r in states} <= {"ClientConnectorError", "endpoint_disabled"}
    assert sample("iopcare_webhook_endpoints_disabled_total") == disabled + 1
    # The team's endpoint was not affected; a disabled endpoint gets no new deliveries.
    assert len(hx.receiver.on("team")) == 2
    await hx.publish([alert("created")], str(uuid.uuid4()))
    await eventually(lambda: len(hx.receiver.on("team")) == 3)
    assert await hx.db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", dead) == 2
    assert await hx.db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = $1", alive) == 3


async def test_a_burst_sharing_a_notification_group_is_one_post_listing_its_alerts(hx: Harness) -> None:
    await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url(), SEALED)
    await hx.start()
    burst = [alert("created", severity=s) for s in ("critical", "high", "medium")]
    burst_group, later_group = str(uuid.uuid4()), str(uuid.uuid4())
    await hx.publish(burst, burst_group)
    await hx.publish([alert("created")], later_group)

    await eventually(lambda: len(hx.receiver.requests) == 2, message="two notifications")
    payloads = {json.loads(r.body)["notification_group"]: json.loads(r.body) for r in hx.receiver.requests}
    assert [a["alert_id"] for a in payloads[burst_group]["alerts"]] == [e.data.alert_id for e in burst]
    assert len(payloads[later_group]["alerts"]) == 1
    await asyncio.sleep(0.5)
    assert len(hx.receiver.requests) == 2


async def test_a_redelivered_alert_event_is_not_delivered_twice(hx: Harness) -> None:
    await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url(), SEALED)
    first = await hx.start()
    event, group = alert("created"), str(uuid.uuid4())
    # The relay republishes after a crash between the broker's ack and its own commit: same event twice.
    await hx.publish([event], group)
    await hx.publish([event], group)
    await eventually(lambda: hx.receiver.requests, message="first delivery")
    await asyncio.sleep(1.0)  # past the coalescing wait and several polls
    await first.stop()
    assert len(hx.receiver.requests) == 1
    assert await hx.db.fetchval("SELECT count(*) FROM webhook_deliveries") == 1


async def test_a_new_consumer_group_starts_from_what_postgres_records_as_taken_in(hx: Harness) -> None:
    """A dispatcher in a new consumer group (renamed, or its Kafka offsets expired) seeks to the
    position recorded with the deliveries: it does not re-read the topic, so an endpoint registered
    in between gets no webhook about old alerts, and the next alert reaches both once."""
    await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url("before"), SEALED)
    first = await hx.start()
    for _ in range(3):
        await hx.publish([alert("created")], str(uuid.uuid4()))
    await eventually(lambda: len(hx.receiver.on("before")) == 3, message="three deliveries")
    await first.stop()
    recorded = await hx.db.fetchval("SELECT sum(next_offset) FROM dispatcher_progress")
    assert recorded == 3

    await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url("since"), SEALED)
    consumed = sample("iopcare_dispatcher_alert_events_consumed_total", kind="created")
    await hx.start(dispatcher_group_id=f"test-dispatcher-{uuid.uuid4().hex[:6]}")
    latest = alert("created")
    await hx.publish([latest], str(uuid.uuid4()))
    await eventually(lambda: len(hx.receiver.on("since")) == 1, message="the new alert at the new endpoint")
    await eventually(lambda: len(hx.receiver.on("before")) == 4, message="the new alert at the old endpoint")
    await asyncio.sleep(1.0)  # past the coalescing wait and several polls
    # Only the new record was read: the three before it were not taken in again.
    assert sample("iopcare_dispatcher_alert_events_consumed_total", kind="created") == consumed + 1
    assert len(hx.receiver.on("before")) == 4
    [since] = hx.receiver.on("since")
    assert [a["alert_id"] for a in json.loads(since.body)["alerts"]] == [latest.data.alert_id]
    assert await hx.db.fetchval("SELECT sum(next_offset) FROM dispatcher_progress") == 4


async def test_an_escalation_reaches_the_supervisors_own_endpoint(hx: Harness) -> None:
    await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url("counselor"), SEALED)
    await add_endpoint(hx.db, "counselor", SUPERVISOR, hx.receiver.url("supervisor"), SEALED)
    await add_endpoint(hx.db, "team", SUPERVISOR, hx.receiver.url("team"), SEALED)
    await add_endpoint(hx.db, "counselor", "staff-c99", hx.receiver.url("other"), SEALED)
    await hx.start()
    alert_id = str(uuid.uuid4())
    await hx.publish([alert("created", alert_id=alert_id)], str(uuid.uuid4()))
    await hx.publish([alert("escalated", alert_id=alert_id)], str(uuid.uuid4()))

    def kinds(path: str) -> list[str]:
        return [a["kind"] for r in hx.receiver.on(path) for a in json.loads(r.body)["alerts"]]

    await eventually(lambda: len(hx.receiver.requests) == 5, message="five notifications")
    assert sorted(kinds("counselor")) == ["created", "escalated"]
    assert sorted(kinds("team")) == ["created", "escalated"]
    assert kinds("supervisor") == ["escalated"]
    assert kinds("other") == []


async def test_two_dispatchers_send_each_delivery_once(hx: Harness) -> None:
    await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url("a"), SEALED)
    await add_endpoint(hx.db, "team", SUPERVISOR, hx.receiver.url("b"), SEALED)
    await hx.start()
    await hx.start()  # same consumer group, same deliveries table
    for _ in range(15):
        await hx.publish([alert("created")], str(uuid.uuid4()))

    await eventually(lambda: len(hx.receiver.requests) >= 30, message="thirty notifications")
    await asyncio.sleep(0.5)
    ids = [r.headers[ID_HEADER] for r in hx.receiver.requests]
    assert len(ids) == len(set(ids)) == 30


async def test_a_pending_delivery_survives_a_restart_of_the_dispatcher(hx: Harness) -> None:
    hx.receiver.statuses = [503]
    await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url(), SEALED)
    first = await hx.start(webhook_retry_base_seconds=2.0, webhook_retry_max_seconds=2.0)
    await hx.publish([alert("created")], str(uuid.uuid4()))
    await eventually(lambda: hx.receiver.requests, message="first attempt")
    await first.stop()
    assert await hx.db.fetchval("SELECT state FROM webhook_deliveries") == "pending"

    await hx.start()  # same group: the offsets were committed, the retry is in Postgres
    await eventually(lambda: len(hx.receiver.requests) == 2, within=10, message="the retry after the restart")
    assert await hx.db.fetchval("SELECT attempts FROM webhook_deliveries") == 2
    await eventually(lambda: hx.db.fetchval("SELECT state = 'delivered' FROM webhook_deliveries"))


async def test_a_captured_webhook_replayed_after_the_tolerance_is_refused_by_the_receivers_library(
    hx: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    await add_endpoint(hx.db, "counselor", COUNSELOR, hx.receiver.url(), SEALED)
    await hx.start()
    await hx.publish([alert("created")], str(uuid.uuid4()))
    await eventually(lambda: hx.receiver.requests, message="no POST reached the receiver")
    [request] = hx.receiver.requests
    Webhook(SECRET).verify(request.body, dict(request.headers))  # genuine, and fresh

    class SixMinutesLater(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> SixMinutesLater:
            return cls.fromtimestamp((datetime.now(UTC) + timedelta(minutes=6)).timestamp(), tz)

    monkeypatch.setattr(standardwebhooks.webhooks, "datetime", SixMinutesLater)
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(SECRET).verify(request.body, dict(request.headers))


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
async def test_the_dispatcher_refuses_at_connect_time_a_target_that_resolves_to_a_private_address(
    hx: Harness, host: str
) -> None:
    # Registered behind the CLI's back (or a name that resolved elsewhere when it was registered).
    url = f"http://{host}:{hx.receiver.port}/hook"
    await add_endpoint(hx.db, "counselor", COUNSELOR, url, SEALED)
    await hx.start(webhook_allowed_networks="")
    await hx.publish([alert("created")], str(uuid.uuid4()))
    await eventually(
        lambda: hx.db.fetchval("SELECT last_error FROM webhook_deliveries WHERE attempts > 0"),
        message="no attempt recorded",
    )
    assert await hx.db.fetchval("SELECT last_error FROM webhook_deliveries") == "TargetRefused"
    assert hx.receiver.requests == []

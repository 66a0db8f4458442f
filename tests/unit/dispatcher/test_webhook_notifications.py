"""What a webhook says and to whom: minimal payloads, routing, one delivery per burst."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from tests.unit.dispatcher.factories import ACTION, COUNSELOR, EXPLANATION, PATIENT, SUPERVISOR, TITLE, alert

from iopcare.contract import encode_event
from iopcare.dispatcher.consumer import AlertRecord, NotAnAlertEvent, decode_alert_record
from iopcare.dispatcher.relay import NOTIFICATION_GROUP_HEADER
from iopcare.dispatcher.webhooks.policy import (
    DEFAULT_EVENT_KINDS,
    ExistingDelivery,
    Notice,
    Routed,
    Subscription,
    notice_of,
    notification_body,
    plan_deliveries,
    recipients,
)

PUBLIC = "https://iop.example.org/"


def _body(*notices: Notice) -> bytes:
    return notification_body("d-1", "g-1", PATIENT, datetime(2026, 3, 4, tzinfo=UTC), notices)


def test_a_notification_carries_ids_codes_and_a_link_and_no_clinical_text() -> None:
    event = alert("created", severity="critical")
    body = _body(notice_of(event, PUBLIC))
    payload = json.loads(body)
    assert set(payload) == {"type", "id", "notification_group", "patient_id", "created_at", "alerts"}
    [item] = payload["alerts"]
    assert set(item) == {"event_id", "kind", "alert_id", "severity", "state", "escalated", "time", "url"}
    assert item == {
        "event_id": event.id,
        "kind": "created",
        "alert_id": event.data.alert_id,
        "severity": "critical",
        "state": "open",
        "escalated": False,
        "time": "2026-03-04T10:00:00Z",
        "url": f"https://iop.example.org/inbox#alert-{event.data.alert_id}",
    }
    assert payload["patient_id"] == PATIENT
    for forbidden in (
        "title",
        "explanation",
        "evidence",
        "recommended_action",
        "rule_id",
        "facts",
        "risk_score",
    ):
        assert forbidden.encode() not in body
    for text in (TITLE, EXPLANATION, ACTION, "reported_use", "substance"):
        assert text.encode() not in body


def test_the_body_of_a_delivery_is_the_same_bytes_every_time() -> None:
    notice = notice_of(alert("created"), PUBLIC)
    assert _body(notice) == _body(Notice.from_json(json.loads(json.dumps(notice.as_json()))))


def _subs() -> list[Subscription]:
    return [
        Subscription(1, "counselor", COUNSELOR),
        Subscription(2, "team", SUPERVISOR),
        Subscription(3, "counselor", SUPERVISOR),  # the supervisor's own endpoint
        Subscription(4, "counselor", "staff-c99"),  # another counselor
        Subscription(5, "team", "staff-s77"),  # another team
        Subscription(6, "counselor", COUNSELOR, frozenset({"escalated"})),
    ]


def test_a_new_alert_goes_to_its_counselor_and_their_team() -> None:
    assert recipients(alert("created"), _subs()) == [1, 2]


def test_an_escalation_also_reaches_the_supervisors_own_endpoint_and_so_do_later_changes() -> None:
    assert recipients(alert("escalated"), _subs()) == [1, 2, 3, 6]
    assert recipients(alert("acknowledged", escalated=True), _subs()) == [1, 2, 3]
    assert recipients(alert("acknowledged", escalated=False), _subs()) == [1, 2]


def test_repeat_triggers_are_not_sent_unless_subscribed() -> None:
    assert "updated" not in DEFAULT_EVENT_KINDS
    assert recipients(alert("updated"), _subs()) == []
    assert recipients(
        alert("updated"), [Subscription(7, "counselor", COUNSELOR, frozenset({"updated"}))]
    ) == [7]


def test_only_a_page_is_pushed_an_inbox_or_digest_item_is_shown_only() -> None:
    for kind in ("created", "updated", "escalated", "acknowledged", "resolved"):
        for tier in ("inbox", "digest"):
            assert recipients(alert(kind, tier=tier), _subs()) == [], (kind, tier)  # type: ignore[arg-type]
    assert recipients(alert("created", tier="page"), _subs()) == [1, 2]


def test_an_alert_without_a_supervisor_reaches_no_team() -> None:
    assert recipients(alert("escalated", supervisor=None, escalated=True), _subs()) == [1, 6]


def _routed(endpoint: int, group: str, event_id: str) -> Routed:
    return Routed(endpoint, group, PATIENT, notice_of(alert("created", event_id=event_id), PUBLIC))


def test_a_burst_sharing_a_notification_group_is_one_delivery_per_endpoint() -> None:
    routed = [_routed(1, "g", "e1"), _routed(2, "g", "e1"), _routed(1, "g", "e2"), _routed(1, "h", "e3")]
    plan = plan_deliveries(routed, [])
    assert plan.appends == {}
    assert [
        (c.endpoint_id, c.notification_group, c.part, [n.event_id for n in c.notices]) for c in plan.creates
    ] == [
        (1, "g", 0, ["e1", "e2"]),
        (2, "g", 0, ["e1"]),
        (1, "h", 0, ["e3"]),
    ]


def test_a_redelivered_event_adds_nothing() -> None:
    existing = [ExistingDelivery(10, 1, "g", 0, frozenset({"e1", "e2"}), open=False)]
    routed = [_routed(1, "g", "e1"), _routed(1, "g", "e2"), _routed(1, "g", "e1")]
    assert plan_deliveries(routed, existing).empty


def test_later_changes_of_a_group_join_its_delivery_while_it_waits() -> None:
    existing = [ExistingDelivery(10, 1, "g", 0, frozenset({"e1"}), open=True)]
    plan = plan_deliveries([_routed(1, "g", "e1"), _routed(1, "g", "e2")], existing)
    assert {k: [n.event_id for n in v] for k, v in plan.appends.items()} == {10: ["e2"]}
    assert plan.creates == []


def test_changes_of_a_group_arriving_after_its_delivery_went_out_make_a_follow_up() -> None:
    existing = [
        ExistingDelivery(10, 1, "g", 0, frozenset({"e1"}), open=False),
        ExistingDelivery(11, 1, "g", 1, frozenset({"e2"}), open=False),
    ]
    plan = plan_deliveries([_routed(1, "g", "e3"), _routed(1, "g", "e4")], existing)
    assert [(c.part, [n.event_id for n in c.notices]) for c in plan.creates] == [(2, ["e3", "e4"])]


def _record(value: bytes | None, key: bytes | None = PATIENT.encode(), headers=()) -> AlertRecord:  # type: ignore[no-untyped-def]
    return AlertRecord(partition=3, offset=17, key=key, value=value, headers=headers)


def test_an_alert_record_decodes_with_its_notification_group() -> None:
    event = alert("created")
    group = str(uuid.uuid4())
    taken = decode_alert_record(
        _record(encode_event(event), headers=[(NOTIFICATION_GROUP_HEADER, group.encode())])
    )
    assert (taken.event, taken.notification_group) == (event, group)
    assert decode_alert_record(_record(encode_event(event))).notification_group == event.id
    bad_header = [(NOTIFICATION_GROUP_HEADER, b"not-a-uuid")]
    assert (
        decode_alert_record(_record(encode_event(event), headers=bad_header)).notification_group == event.id
    )


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (None, PATIENT.encode(), "empty"),
        (b"\xff\xfe", PATIENT.encode(), "schema_violation"),
        (b'{"specversion": "1.0", "patient_name": "Jane Roe"}', PATIENT.encode(), "schema_violation"),
        (encode_event(alert("created")), b"pt-someone-else", "key_mismatch"),
        (b"x" * 300_000, PATIENT.encode(), "oversized"),
    ],
)
def test_a_record_that_is_not_an_alert_event_is_refused_without_echoing_it(
    value: bytes | None, key: bytes, reason: str
) -> None:
    with pytest.raises(NotAnAlertEvent, match=reason) as caught:
        decode_alert_record(_record(value, key=key))
    assert "Jane" not in str(caught.value) and "patient_name" not in str(caught.value)

"""Outbound alert events: strict shape and a consistent lifecycle."""

from __future__ import annotations

import copy
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from iopcare.contract import (
    AlertEvent,
    AlertEventData,
    AlertEventKind,
    AlertEventType,
    alert_event,
    encode_event,
)
from iopcare.contract.examples import EXAMPLE_ALERT_DATA, EXAMPLE_TIME, example_alert_event


def alert_data(**overrides: Any) -> dict[str, Any]:
    data = copy.deepcopy(EXAMPLE_ALERT_DATA)
    data.update(overrides)
    return data


def build(kind: AlertEventKind = "created", **overrides: Any) -> AlertEvent:
    return alert_event(kind, AlertEventData.model_validate(alert_data(**overrides)), source="/iopcare/test")


def test_alert_event_round_trips_through_the_wire() -> None:
    event = example_alert_event()
    assert AlertEvent.model_validate_json(encode_event(event), strict=True) == event


def test_alert_event_type_names_the_kind_and_subject_is_the_patient() -> None:
    event = example_alert_event()
    assert event.type == "iop.alert.created"
    assert event.kind == "created"
    assert event.subject == event.data.patient_id == event.patient_id
    assert event.time == EXAMPLE_TIME


def test_every_kind_has_an_event_type() -> None:
    assert [f"iop.alert.{kind}" for kind in get_args(AlertEventKind)] == list(get_args(AlertEventType))


@pytest.mark.parametrize(
    ("kind", "state", "escalated"),
    [
        ("created", "open", False),
        ("updated", "open", False),
        ("updated", "acknowledged", False),
        ("acknowledged", "acknowledged", False),
        ("snoozed", "snoozed", False),
        ("escalated", "open", True),
        ("resolved", "resolved", True),
    ],
)
def test_consistent_lifecycle_events_are_accepted(kind: AlertEventKind, state: str, escalated: bool) -> None:
    event = build(kind, state=state, escalated=escalated)
    assert (event.kind, event.data.state) == (kind, state)


@pytest.mark.parametrize(
    ("kind", "state", "escalated"),
    [
        ("created", "acknowledged", False),
        ("acknowledged", "open", False),
        ("snoozed", "open", False),
        ("resolved", "acknowledged", False),
        ("escalated", "open", False),
    ],
)
def test_inconsistent_lifecycle_events_are_rejected(
    kind: AlertEventKind, state: str, escalated: bool
) -> None:
    with pytest.raises(ValidationError):
        build(kind, state=state, escalated=escalated)


def test_unknown_kind_is_rejected() -> None:
    data = AlertEventData.model_validate(alert_data())
    with pytest.raises(ValueError, match="unknown alert event kind"):
        alert_event("paged", data, source="/x")  # type: ignore[arg-type]


def test_subject_must_be_the_alerts_patient() -> None:
    doc = example_alert_event().model_dump(mode="json")
    doc["subject"] = "pt-someone-else"
    with pytest.raises(ValidationError, match="subject_mismatch"):
        AlertEvent.model_validate(doc)


@pytest.mark.parametrize(
    "overrides",
    [
        {"alert_id": "not-a-uuid"},
        {"alert_id": "0B8E4C1A-5D2F-4E7B-9A61-3C2D1E0F9A88"},
        {"patient_id": "Jane Doe"},
        {"severity": "urgent"},
        {"state": "closed"},
        {"title": ""},
        {"title": "x" * 201},
        {"explanation": "x" * 1001},
        {"recommended_action": "x" * 501},
        {"occurrences": 0},
        {"risk_score": 101},
        {"risk_score": -1},
        {"rule_id": "craving high"},
        {"last_seen_at": "2024-06-03T17:29:59Z"},
        {"first_seen_at": "2024-06-03T17:30:00"},
        {"evidence": {"event_ids": ["e"] * 51, "facts": {}}},
        {"evidence": {"event_ids": ["evt 1"], "facts": {}}},
        {"evidence": {"event_ids": [], "facts": {"nested": {"a": 1}}}},
        {"evidence": {"event_ids": [], "facts": {"free text key": 1}}},
        {"evidence": {"event_ids": [], "facts": {"note": "x" * 201}}},
        {"note": "free text"},
    ],
)
def test_out_of_contract_alert_data_is_rejected(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        AlertEventData.model_validate(alert_data(**overrides))


def test_evidence_facts_keep_their_json_types() -> None:
    facts = {"craving": 9, "threshold": 8, "mean": 2.5, "excused": False, "kind": "group", "missing": None}
    event = build(evidence={"event_ids": ["evt-1", "evt-2"], "facts": facts})
    decoded = AlertEvent.model_validate_json(encode_event(event), strict=True)
    assert decoded.data.evidence.facts == facts
    assert [type(v) for v in decoded.data.evidence.facts.values()] == [type(v) for v in facts.values()]


def test_supervisor_and_risk_score_are_optional() -> None:
    event = build(supervisor_id=None, risk_score=None)
    assert (event.data.supervisor_id, event.data.risk_score) == (None, None)

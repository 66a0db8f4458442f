"""Alert events for the dispatcher's tests, built through the contract (so they are valid ones)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from iopcare.contract import AlertEvent, AlertEventData, AlertEventKind, Evidence, alert_event

PATIENT = "pt-webhook01"
COUNSELOR = "staff-c12"
SUPERVISOR = "staff-s03"
AT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)

# Clinical text a webhook must never carry; tests look for these strings in what is sent.
TITLE = "Reported alcohol use at check-in"
EXPLANATION = "The patient reported drinking on Saturday after a family argument."
ACTION = "Call the patient today and review the safety plan."

_STATE: dict[str, str] = {
    "created": "open",
    "acknowledged": "acknowledged",
    "snoozed": "snoozed",
    "resolved": "resolved",
}


def alert(
    kind: AlertEventKind = "created",
    *,
    alert_id: str | None = None,
    patient: str = PATIENT,
    counselor: str = COUNSELOR,
    supervisor: str | None = SUPERVISOR,
    severity: str = "high",
    escalated: bool | None = None,
    event_id: str | None = None,
    tier: str = "page",
) -> AlertEvent:
    """An `iop.alert.<kind>` event about one alert, with clinical text in every free-text field."""
    data = AlertEventData(
        alert_id=alert_id or str(uuid.uuid4()),
        dedup_key=f"{patient}:reported_use:e1",
        patient_id=patient,
        counselor_id=counselor,
        supervisor_id=supervisor,
        rule_id="reported_use",
        rule_version="1",
        rule_pack_version="2026.1",
        severity=severity,  # type: ignore[arg-type]
        state=_STATE.get(kind, "open"),  # type: ignore[arg-type]
        title=TITLE,
        explanation=EXPLANATION,
        recommended_action=ACTION,
        evidence=Evidence(event_ids=["ev-checkin-1"], facts={"substance_use_reported": True}),
        first_seen_at=AT,
        last_seen_at=AT,
        risk_score=71,
        escalated=(kind == "escalated") if escalated is None else escalated,
        tier=tier,  # type: ignore[arg-type]
    )
    return alert_event(kind, data, source="/iopcare/processor", time=AT, id=event_id)

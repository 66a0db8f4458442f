"""What the API reads and returns: pydantic models, one source for validation, JSON and OpenAPI.

Response bodies carry what a counselor needs to act (the rules' generated explanations, evidence,
the patient's recent events); request bodies carry short notes and reasons, which are stored on the
alert's transition and never logged.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from iopcare.contract import AcknowledgementOutcome, AlertState, Severity, Tier

MAX_BATCH = 500
"""Events per ``POST /v1/events``; larger loads belong on Kafka (``iopcare publish``)."""

MAX_INGEST_BYTES = 4 * 1024 * 1024
"""The largest body of ``POST /v1/events``: a full batch of the contract's largest ordinary events
(a check-in with every field is about 1 KiB, so 500 of them 0.5 MiB) with room to spare. An event
over the processor's 256 KiB limit is refused either way."""

MAX_ACTION_BYTES = 64 * 1024
"""The largest body of a counselor's action (an acknowledgement's note is at most 500 characters)."""

JSON_BODY_TYPES: dict[str, frozenset[str]] = {
    "/v1/events": frozenset(
        {"application/json", "application/cloudevents+json", "application/cloudevents-batch+json"}
    ),
}
"""The content types a route's body may have (JSON everywhere; CloudEvents' own on ingest)."""

Note = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Problem(ApiModel):
    """An error: a stable code, a sentence for a person, and the request id to quote."""

    error: str = Field(examples=["not_found"])
    detail: str
    request_id: str


class Me(ApiModel):
    """The caller, as the token says."""

    token_id: str
    role: Literal["counselor", "supervisor", "integrator", "ops"]
    subject: str


class AlertSummary(ApiModel):
    """An alert as the inbox lists it."""

    alert_id: str
    patient_id: str
    counselor_id: str | None
    rule_id: str
    rule_version: str
    rule_pack_version: str
    severity: Severity
    state: AlertState
    title: str
    explanation: str
    recommended_action: str
    occurrences: int
    first_seen_at: datetime
    last_seen_at: datetime
    raised_at: datetime
    escalate_at: datetime | None
    escalated: bool
    snoozed_until: datetime | None
    inhibited_by: str | None
    resolution: str | None
    risk_score: int | None
    tier: Tier
    """How it reaches the counselor: page (pushed, escalates), inbox (shown only), digest."""
    acknowledgement_outcome: AcknowledgementOutcome | None = None
    """What the counselor recorded doing about it when acknowledging it."""


class AlertPage(ApiModel):
    """One page of alerts, most severe first, then newest; ``next_cursor`` fetches the next page."""

    alerts: list[AlertSummary]
    next_cursor: str | None


class Evidence(ApiModel):
    event_ids: list[str]
    facts: dict[str, Any]


class Transition(ApiModel):
    """One change in the alert's lifecycle: who, when, from, to, why."""

    kind: str
    actor: str
    at: datetime
    from_state: str | None
    to_state: str
    reason: str | None
    outcome: AcknowledgementOutcome | None = None
    """On an acknowledgement: what the counselor recorded doing about the alert."""


class TimelineEvent(ApiModel):
    """One of the patient's events (third-party reports held for want of consent are left out)."""

    event_id: str
    type: str
    time: datetime
    data: dict[str, Any]


class RiskFactorView(ApiModel):
    name: str
    points: int
    reason: str


class RiskView(ApiModel):
    """The 0-100 relapse-risk score, its factors and its change over the trend window."""

    score: int
    as_of: datetime
    factors: list[RiskFactorView]
    explanation: str
    trend_change: int
    trend_direction: Literal["rising", "falling", "steady"]
    trend_days: int


class AlertDetail(ApiModel):
    alert: AlertSummary
    evidence: Evidence
    transitions: list[Transition]
    timeline: list[TimelineEvent]
    risk: RiskView | None


class WeekView(ApiModel):
    """The current program week's attendance against the weekly plan."""

    week: int
    group_sessions: int
    group_sessions_planned: int
    individual_sessions: int
    individual_sessions_planned: int
    hours: float
    hours_planned: float
    missed_unexcused: int
    missed_excused: int


class PatientSummary(ApiModel):
    """A patient's engagement at a glance, as of ``as_of`` (the processor judges it when the
    patient's course moves: an event, a week close, a check that fell due)."""

    patient_id: str
    counselor_id: str | None
    supervisor_id: str | None
    as_of: datetime | None
    level_of_care: str | None
    program_start: date | None
    discharged: bool
    last_event_at: datetime | None
    last_checkin_at: datetime | None
    last_craving: int | None
    consecutive_unexcused_misses: int
    this_week: WeekView | None
    risk: RiskView | None
    live_alerts: list[AlertSummary]


class AcknowledgeRequest(ApiModel):
    outcome: AcknowledgementOutcome | None = None
    """What you did about it: contacted_patient, changed_plan, no_action_needed (the alert was right
    but nothing was needed) or false_alarm. `iopcare evaluate --database` reports the counselors'
    own precision and each rule's override rate from these."""
    note: Note | None = None


class SnoozeRequest(ApiModel):
    until: datetime
    reason: Note


class ResolveRequest(ApiModel):
    reason: Note


class DigestItemView(ApiModel):
    """One alert of a digest: whose, which rule, its title and its state now."""

    alert_id: str
    patient_id: str
    rule_id: str
    title: str
    state: AlertState


class DigestView(ApiModel):
    """A counselor's daily digest: the digest-tier alerts gathered at the clinic's hour."""

    digest_id: str
    counselor_id: str
    for_day: date
    made_at: datetime
    headline: str
    """e.g. "Daily summary for Mon 7 Dec: 5 items about 3 patients"."""
    by_rule: dict[str, int]
    """How many items each rule contributed."""
    items: list[DigestItemView]
    acknowledged_at: datetime | None
    acknowledged_by: str | None


class DigestPage(ApiModel):
    """The latest digests, newest first."""

    digests: list[DigestView]


class AcknowledgeDigestRequest(ApiModel):
    outcome: AcknowledgementOutcome | None = None
    """Recorded on every item acknowledged (see the alert acknowledgement)."""
    note: Note | None = None
    """Recorded on every item's acknowledgement (in the database only, as for an alert)."""


class IngestResult(ApiModel):
    """What became of one posted event: accepted (acknowledged by the broker), rejected (it breaks the
    contract: fix it, the reason says how) or failed (the broker did not acknowledge it: retry it; the
    processor drops a duplicate by event id)."""

    index: int
    status: Literal["accepted", "rejected", "failed"]
    event_id: str | None = None
    reason: str | None = None
    detail: str | None = None
    partition: int | None = None
    offset: int | None = None


class IngestResponse(ApiModel):
    accepted: int
    rejected: int  # rejected or failed
    results: list[IngestResult]


__all__ = [
    "AcknowledgeRequest",
    "AlertDetail",
    "AlertPage",
    "AlertSummary",
    "Evidence",
    "IngestResponse",
    "IngestResult",
    "Me",
    "PatientSummary",
    "Problem",
    "ResolveRequest",
    "RiskFactorView",
    "RiskView",
    "SnoozeRequest",
    "TimelineEvent",
    "Transition",
    "WeekView",
]

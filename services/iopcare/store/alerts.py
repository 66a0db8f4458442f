"""Alerts in Postgres: the rows the counselor inbox reads, their transitions, and their alert events.

Repository functions take the caller's connection, so the alert changes that a batch (or a sweep, or
a counselor's action) causes commit in the *same* transaction as whatever caused them. Every
:class:`~iopcare.domain.alerts.Change` becomes three writes, each one set-based statement per call:
the alert row (latest snapshot), a transition row (who, when, from, to, why) and an outbox row holding
the alert event for ``iop.alerts.v1``. The outbox relay publishes those at least once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from iopcare.contract import AlertEvent, AlertEventData, Evidence, alert_event, encode_event
from iopcare.domain.alerts import Alert, Change, PatientAlerts
from iopcare.tracing import current_trace, new_trace, parse_traceparent

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

ALERT_SOURCE = "/iopcare/processor"
UNASSIGNED = "unassigned"  # counselor of a patient the program has no enrollment for (yet)


@dataclass(frozen=True)
class CareTeam:
    """Who an alert about a patient goes to, and who it escalates to."""

    counselor_id: str | None
    supervisor_id: str | None


_COLUMNS = """alert_id, dedup_key, patient_id, counselor_id, supervisor_id, rule_id, rule_version,
    rule_pack_version, severity, state, title, explanation, recommended_action, event_ids, facts,
    occurrences, first_seen_at, last_seen_at, raised_at, escalate_at, escalated, snoozed_until,
    inhibited_by, resolution, risk_score, tier, acknowledgement_outcome"""


async def load_alerts(
    connection: Connection,
    patient_ids: Sequence[str],
    dedup_keys: Sequence[str] = (),
    *,
    closed_keys: bool = False,
) -> dict[str, PatientAlerts]:
    """The patients' live alerts, plus resolved ones under ``dedup_keys``; with ``closed_keys``, the
    dedup keys of all their resolved alerts too (a resolved episode must not open again: a course
    deciding on new findings needs them). The caller holds the patients' ``patient_state`` row locks."""
    rows = await connection.fetch(
        f"""
        SELECT {_COLUMNS} FROM alerts
        WHERE patient_id = ANY($1::text[]) AND (state <> 'resolved' OR dedup_key = ANY($2::text[]))
        """,
        list(patient_ids),
        list(dedup_keys),
    )
    by_patient = {pid: PatientAlerts(pid) for pid in patient_ids}
    for row in rows:
        alert = _alert(row)
        by_patient[alert.patient_id].alerts[alert.dedup_key] = alert
    if closed_keys:
        for row in await connection.fetch(
            "SELECT patient_id, dedup_key FROM alerts "
            "WHERE patient_id = ANY($1::text[]) AND state = 'resolved'",
            list(patient_ids),
        ):
            by_patient[row["patient_id"]].closed.add(row["dedup_key"])
    return by_patient


def _alert(row: asyncpg.Record) -> Alert:
    return Alert(
        alert_id=str(row["alert_id"]),
        dedup_key=row["dedup_key"],
        patient_id=row["patient_id"],
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        rule_pack_version=row["rule_pack_version"],
        severity=row["severity"],
        state=row["state"],
        title=row["title"],
        explanation=row["explanation"],
        recommended_action=row["recommended_action"],
        event_ids=tuple(row["event_ids"]),
        facts=json.loads(row["facts"]),
        occurrences=row["occurrences"],
        first_seen_at=row["first_seen_at"],
        last_seen_at=row["last_seen_at"],
        raised_at=row["raised_at"],
        escalate_at=row["escalate_at"],
        escalated=row["escalated"],
        snoozed_until=row["snoozed_until"],
        inhibited_by=str(row["inhibited_by"]) if row["inhibited_by"] else None,
        resolution=row["resolution"],
        tier=row["tier"],
        acknowledgement_outcome=row["acknowledgement_outcome"],
    )


async def record_changes(
    connection: Connection,
    changes: Sequence[Change],
    teams: Mapping[str, CareTeam],
    risk_scores: Mapping[str, int | None] | None = None,
    traces: Mapping[str, str] | None = None,
) -> list[AlertEvent]:
    """Write the alerts' latest snapshots, the transitions and the alert events (outbox); return the
    events. ``traces``: the ``traceparent`` of inbound events by event id; an alert event continues
    the trace of the first event of its evidence found there, else the trace in progress (an API
    request's, a sweep's), else a new one."""
    if not changes:
        return []
    risk_scores = risk_scores or {}
    latest: dict[str, Alert] = {}
    for change in changes:
        latest[change.alert.alert_id] = change.alert
    snapshots = list(latest.values())

    def team(alert: Alert) -> CareTeam:
        return teams.get(alert.patient_id, CareTeam(None, None))

    await connection.execute(
        f"""
        INSERT INTO alerts ({_COLUMNS})
        SELECT c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14::text[], c15, c16, c17, c18,
               c19, c20, c21, c22, c23, c24, c25, c26, c27
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[],
            $14::text[], $15::jsonb[], $16::int[], $17::timestamptz[], $18::timestamptz[],
            $19::timestamptz[], $20::timestamptz[], $21::boolean[], $22::timestamptz[], $23::uuid[],
            $24::text[], $25::int[], $26::text[], $27::text[])
            AS u(c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19,
                 c20, c21, c22, c23, c24, c25, c26, c27)
        ON CONFLICT (alert_id) DO UPDATE SET
            counselor_id = EXCLUDED.counselor_id, supervisor_id = EXCLUDED.supervisor_id,
            rule_version = EXCLUDED.rule_version, rule_pack_version = EXCLUDED.rule_pack_version,
            severity = EXCLUDED.severity, state = EXCLUDED.state, title = EXCLUDED.title,
            explanation = EXCLUDED.explanation, recommended_action = EXCLUDED.recommended_action,
            event_ids = EXCLUDED.event_ids, facts = EXCLUDED.facts, occurrences = EXCLUDED.occurrences,
            first_seen_at = EXCLUDED.first_seen_at, last_seen_at = EXCLUDED.last_seen_at,
            escalate_at = EXCLUDED.escalate_at, escalated = EXCLUDED.escalated,
            snoozed_until = EXCLUDED.snoozed_until, inhibited_by = EXCLUDED.inhibited_by,
            resolution = EXCLUDED.resolution, risk_score = EXCLUDED.risk_score, tier = EXCLUDED.tier,
            acknowledgement_outcome = EXCLUDED.acknowledgement_outcome, updated_at = now()
        """,
        [a.alert_id for a in snapshots],
        [a.dedup_key for a in snapshots],
        [a.patient_id for a in snapshots],
        [team(a).counselor_id for a in snapshots],
        [team(a).supervisor_id for a in snapshots],
        [a.rule_id for a in snapshots],
        [a.rule_version for a in snapshots],
        [a.rule_pack_version for a in snapshots],
        [a.severity for a in snapshots],
        [a.state for a in snapshots],
        [a.title for a in snapshots],
        [a.explanation for a in snapshots],
        [a.recommended_action for a in snapshots],
        # A text[] inside a unnest of arrays would flatten: carry each list as a Postgres array literal.
        [_array_literal(a.event_ids) for a in snapshots],
        [json.dumps(dict(a.facts)) for a in snapshots],
        [a.occurrences for a in snapshots],
        [a.first_seen_at for a in snapshots],
        [a.last_seen_at for a in snapshots],
        [a.raised_at for a in snapshots],
        [a.escalate_at for a in snapshots],
        [a.escalated for a in snapshots],
        [a.snoozed_until for a in snapshots],
        [a.inhibited_by for a in snapshots],
        [a.resolution for a in snapshots],
        [risk_scores.get(a.patient_id) for a in snapshots],
        [a.tier for a in snapshots],
        [a.acknowledgement_outcome for a in snapshots],
    )
    await connection.execute(
        """
        INSERT INTO alert_transitions (alert_id, kind, actor, at, from_state, to_state, reason, outcome)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::text[],
                             $6::text[], $7::text[], $8::text[])
        """,
        [c.alert.alert_id for c in changes],
        [c.kind for c in changes],
        [c.actor for c in changes],
        [c.at for c in changes],
        [c.from_state for c in changes],
        [c.alert.state for c in changes],
        [c.reason for c in changes],
        [c.alert.acknowledgement_outcome if c.kind == "acknowledged" else None for c in changes],
    )
    events = [
        alert_event(
            change.kind,
            _event_data(change.alert, team(change.alert), risk_scores.get(change.alert.patient_id)),
            source=ALERT_SOURCE,
            time=change.at,
            id=str(uuid.uuid4()),
            traceparent=_traceparent(change, traces or {}),
        )
        for change in changes
    ]
    # One notification group per patient per call: what was decided together is announced together.
    groups = {pid: str(uuid.uuid4()) for pid in {e.subject for e in events}}
    await connection.execute(
        """
        INSERT INTO outbox (dedup_key, patient_id, kind, payload, notification_group)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::uuid[])
        ON CONFLICT (dedup_key) DO NOTHING
        """,
        [f"alert-event:{e.id}" for e in events],
        [e.subject for e in events],
        [e.type for e in events],
        [encode_event(e).decode() for e in events],
        [groups[e.subject] for e in events],
    )
    return events


def _traceparent(change: Change, traces: Mapping[str, str]) -> str:
    for event_id in change.alert.event_ids:
        cause = parse_traceparent(traces.get(event_id))
        if cause is not None:
            return cause.child().traceparent  # the worker's span, under the clinic system's
    ambient = current_trace()
    return (ambient or new_trace()).traceparent


def _event_data(alert: Alert, team: CareTeam, risk_score: int | None) -> AlertEventData:
    return AlertEventData(
        alert_id=alert.alert_id,
        dedup_key=alert.dedup_key,
        patient_id=alert.patient_id,
        counselor_id=team.counselor_id or UNASSIGNED,
        supervisor_id=team.supervisor_id,
        rule_id=alert.rule_id,
        rule_version=alert.rule_version,
        rule_pack_version=alert.rule_pack_version,
        severity=alert.severity,
        state=alert.state,
        title=alert.title,
        explanation=alert.explanation,
        recommended_action=alert.recommended_action,
        evidence=Evidence(event_ids=list(alert.event_ids), facts=dict(alert.facts)),
        occurrences=alert.occurrences,
        first_seen_at=alert.first_seen_at,
        last_seen_at=alert.last_seen_at,
        risk_score=risk_score,
        escalated=alert.escalated,
        tier=alert.tier,
        acknowledgement_outcome=alert.acknowledgement_outcome,
    )


def _array_literal(values: Sequence[str]) -> str:
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"') for v in values)
    return "{" + ",".join(f'"{v}"' for v in escaped) + "}"


__all__ = ["ALERT_SOURCE", "CareTeam", "load_alerts", "record_changes"]

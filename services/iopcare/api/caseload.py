"""The API's reads, each confined to the caller's caseload.

A counselor sees the patients whose current enrollment names them; a supervisor sees their team's
patients (enrollment's supervisor) and any they counsel themselves. The caseload is read from
``patient_state`` (the latest enrollment), not from the alert rows, so a transfer takes effect at
once, for old alerts too. Outside the caseload, a patient or alert is reported as not found: the API
never says that something exists which the caller may not see.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from iopcare.api.tokens import Principal
from iopcare.store.alerts import Connection
from iopcare.store.patients import CASE_SUMMARY_COLUMNS

SEVERITY_ORDER = "ARRAY['critical','high','medium','low','info']"

ALERT_COLUMNS = """a.alert_id::text AS alert_id, a.patient_id, p.counselor_id, a.rule_id, a.rule_version,
    a.rule_pack_version, a.severity, a.state, a.title, a.explanation, a.recommended_action,
    a.occurrences, a.first_seen_at, a.last_seen_at, a.raised_at, a.escalate_at, a.escalated,
    a.snoozed_until, a.inhibited_by::text AS inhibited_by, a.resolution, a.risk_score, a.tier,
    a.acknowledgement_outcome"""

SUMMARY_FIELDS = [
    "alert_id",
    "patient_id",
    "counselor_id",
    "rule_id",
    "rule_version",
    "rule_pack_version",
    "severity",
    "state",
    "title",
    "explanation",
    "recommended_action",
    "occurrences",
    "first_seen_at",
    "last_seen_at",
    "raised_at",
    "escalate_at",
    "escalated",
    "snoozed_until",
    "inhibited_by",
    "resolution",
    "risk_score",
    "tier",
    "acknowledgement_outcome",
]


def in_caseload(principal: Principal, subject_param: str) -> str:
    """SQL condition on ``patient_state p``: the patient is in the caller's caseload."""
    if principal.role == "counselor":
        return f"p.counselor_id = {subject_param}"
    if principal.role == "supervisor":
        return f"(p.supervisor_id = {subject_param} OR p.counselor_id = {subject_param})"
    return "false"  # integrators and operators see no patient data


class BadCursor(ValueError):
    """A paging cursor this API did not issue."""


@dataclass(frozen=True)
class AlertFilter:
    """What the inbox asks for. ``states`` empty: every live (unresolved) alert."""

    states: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    patient_id: str | None = None
    counselor_id: str | None = None  # a supervisor narrowing to one counselor's caseload
    limit: int = 50
    cursor: str | None = None


def encode_cursor(row: asyncpg.Record | dict[str, object]) -> str:
    position = [row["severity"], row["raised_at"].isoformat(), row["alert_id"]]  # type: ignore[union-attr]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, datetime, str]:
    try:
        severity, raised_at, alert_id = json.loads(
            base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        )
        return str(severity), datetime.fromisoformat(raised_at), str(alert_id)
    except (ValueError, TypeError) as exc:
        raise BadCursor("the cursor is not one this API issued") from exc


async def list_alerts(
    connection: Connection, principal: Principal, query: AlertFilter
) -> tuple[list[asyncpg.Record], str | None]:
    """A page of alerts in the caller's caseload: most severe first, then newest, then by id."""
    conditions = [in_caseload(principal, "$1")]
    args: list[object] = [principal.subject]

    def param(value: object) -> str:
        args.append(value)
        return f"${len(args)}"

    if query.states:
        conditions.append(f"a.state = ANY({param(list(query.states))}::text[])")
    else:
        conditions.append("a.state <> 'resolved'")
    if query.severities:
        conditions.append(f"a.severity = ANY({param(list(query.severities))}::text[])")
    if query.patient_id:
        conditions.append(f"a.patient_id = {param(query.patient_id)}")
    if query.counselor_id:
        conditions.append(f"p.counselor_id = {param(query.counselor_id)}")
    rank = f"array_position({SEVERITY_ORDER}, a.severity)"
    if query.cursor:
        severity, raised_at, alert_id = decode_cursor(query.cursor)
        r, t, i = param(severity), param(raised_at), param(alert_id)
        conditions.append(
            f"({rank} > array_position({SEVERITY_ORDER}, {r}::text) OR ({rank} = "
            f"array_position({SEVERITY_ORDER}, {r}::text) AND (a.raised_at < {t} OR "
            f"(a.raised_at = {t} AND a.alert_id::text > {i}))))"
        )
    rows = await connection.fetch(
        f"""
        SELECT {ALERT_COLUMNS} FROM alerts a JOIN patient_state p USING (patient_id)
        WHERE {" AND ".join(conditions)}
        ORDER BY {rank}, a.raised_at DESC, a.alert_id::text
        LIMIT {param(query.limit + 1)}
        """,
        *args,
    )
    page = rows[: query.limit]
    return page, encode_cursor(page[-1]) if len(rows) > query.limit else None


async def alert_with_caseload(
    connection: Connection, principal: Principal, alert_id: str
) -> tuple[asyncpg.Record | None, str | None]:
    """(the alert if the caller may see it, the alert's patient id if it exists at all): the second
    tells the audit log whose record was asked for, even when the answer is not found."""
    row = await connection.fetchrow(
        f"""
        SELECT {ALERT_COLUMNS}, a.event_ids, a.facts::text AS facts, {in_caseload(principal, "$2")} AS visible
        FROM alerts a JOIN patient_state p USING (patient_id) WHERE a.alert_id = $1::uuid
        """,
        alert_id,
        principal.subject,
    )
    if row is None:
        return None, None
    return (row if row["visible"] else None), row["patient_id"]


async def patient_with_caseload(
    connection: Connection, principal: Principal, patient_id: str
) -> tuple[asyncpg.Record | None, bool]:
    """(the patient's case summary row if the caller may see it, whether the patient exists).
    A patient known only by a held report has a state row but no summary yet (its columns NULL)."""
    row = await connection.fetchrow(
        f"""
        SELECT p.patient_id, p.counselor_id, p.supervisor_id, s.patient_id IS NOT NULL AS summarized,
               {CASE_SUMMARY_COLUMNS}, {in_caseload(principal, "$2")} AS visible
        FROM patient_state p LEFT JOIN patient_summary s USING (patient_id) WHERE p.patient_id = $1
        """,
        patient_id,
        principal.subject,
    )
    if row is None:
        return None, False
    return (row if row["visible"] else None), True


async def live_alerts(connection: Connection, patient_id: str) -> list[asyncpg.Record]:
    return await connection.fetch(
        f"""
        SELECT {ALERT_COLUMNS} FROM alerts a JOIN patient_state p USING (patient_id)
        WHERE a.patient_id = $1 AND a.state <> 'resolved'
        ORDER BY array_position({SEVERITY_ORDER}, a.severity), a.raised_at DESC
        """,
        patient_id,
    )


async def transitions(connection: Connection, alert_id: str) -> list[asyncpg.Record]:
    return await connection.fetch(
        "SELECT kind, actor, at, from_state, to_state, reason, outcome FROM alert_transitions "
        "WHERE alert_id = $1::uuid ORDER BY id",
        alert_id,
    )


async def timeline(connection: Connection, patient_id: str, limit: int = 50) -> list[asyncpg.Record]:
    """The patient's latest events, newest first; reports held for want of consent (and never
    released) stay out: a counselor may not see what the patient did not consent to share."""
    return await connection.fetch(
        """
        SELECT e.event_id, e.event_type AS type, e.event_time AS time, e.payload -> 'data' AS data
        FROM event_log e
        WHERE e.patient_id = $1 AND NOT EXISTS (
            SELECT 1 FROM quarantined_events q
            WHERE q.source = e.source AND q.event_id = e.event_id AND q.released_at IS NULL)
        ORDER BY e.event_time DESC, e.event_id
        LIMIT $2
        """,
        patient_id,
        limit,
    )


def summary_fields(row: asyncpg.Record) -> dict[str, object]:
    return {name: row[name] for name in SUMMARY_FIELDS}


__all__ = [
    "AlertFilter",
    "BadCursor",
    "alert_with_caseload",
    "decode_cursor",
    "encode_cursor",
    "in_caseload",
    "list_alerts",
    "live_alerts",
    "patient_with_caseload",
    "summary_fields",
    "timeline",
    "transitions",
]

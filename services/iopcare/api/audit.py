"""The audit log: one row per patient touched by an API request, written before the response.

Reads are audited too (HIPAA's access accounting; 42 CFR Part 2 records are disclosure-sensitive), and
so are refusals: a counselor asking for another caseload's alert is answered "not found" but recorded
as ``denied`` with the patient it was about, which is what a privacy officer looks for. If the audit
row cannot be written the request fails: no audit, no access.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from iopcare.api.tokens import Principal
from iopcare.store.alerts import Connection

Outcome = Literal["allowed", "denied", "not_found", "rejected", "unchanged"]


@dataclass(frozen=True)
class AuditEntry:
    request_id: str
    principal: Principal
    action: str  # alerts.list, alert.read, alert.acknowledge, patient.read, events.ingest, ...
    route: str
    outcome: Outcome
    patient_id: str | None = None
    alert_id: str | None = None


async def record_audit(connection: Connection, entries: Sequence[AuditEntry]) -> None:
    if not entries:
        return
    await connection.execute(
        """
        INSERT INTO audit_log
            (request_id, actor, role, token_id, patient_id, alert_id, action, outcome, route)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[],
                             $7::text[], $8::text[], $9::text[])
        """,
        [e.request_id for e in entries],
        [e.principal.subject for e in entries],
        [e.principal.role for e in entries],
        [e.principal.token_id for e in entries],
        [e.patient_id for e in entries],
        [e.alert_id for e in entries],
        [e.action for e in entries],
        [e.outcome for e in entries],
        [e.route for e in entries],
    )


__all__ = ["AuditEntry", "Outcome", "record_audit"]

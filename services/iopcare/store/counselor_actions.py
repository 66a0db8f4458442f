"""What counselors do to alerts (acknowledge, snooze, resolve), applied under the patient's lock.

A counselor's action and the processor's batches change the same alerts, so an action takes the
patient's ``patient_state`` row lock, as a batch does: the two serialize, and neither overwrites the
other. Inside the lock the domain decides (``domain/counselor.py``: what fell due by now first, then the
action); the changes go through
:func:`~iopcare.store.alerts.record_changes`, so the action is an alert row update, a transition naming
the counselor, and an alert event on ``iop.alerts.v1``, in the caller's transaction.

The caller (the API) checks that the counselor may act on the alert's patient and audits the request
in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from iopcare.domain.alerts import Alert, Change, Deadline
from iopcare.domain.counselor import CounselorAction, act
from iopcare.store.alerts import CareTeam, Connection, load_alerts, record_changes


class AlertNotFound(LookupError):
    """No alert has this id."""


@dataclass(frozen=True)
class ActionOutcome:
    """The alert after the action, and every change recorded (due ones first)."""

    alert: Alert
    changes: list[Change]


async def alert_patient(connection: Connection, alert_id: str) -> str:
    """The patient an alert is about; :class:`AlertNotFound` if there is no such alert."""
    patient_id = await connection.fetchval("SELECT patient_id FROM alerts WHERE alert_id = $1", alert_id)
    if patient_id is None:
        raise AlertNotFound(alert_id)
    return str(patient_id)


async def apply_action(
    connection: Connection, alert_id: str, action: CounselorAction, *, now: datetime, deadline: Deadline
) -> ActionOutcome:
    """Apply ``action`` to the alert in the caller's transaction. Raises :class:`AlertNotFound` or
    :class:`~iopcare.domain.alerts.AlertError` (resolved already, snooze in the past)."""
    patient_id = await alert_patient(connection, alert_id)
    team_row = await connection.fetchrow(
        "SELECT counselor_id, supervisor_id FROM patient_state WHERE patient_id = $1 FOR UPDATE", patient_id
    )
    team = CareTeam(team_row["counselor_id"], team_row["supervisor_id"]) if team_row else CareTeam(None, None)
    # Live alerts only: an alert that exists but is resolved is refused by the domain.
    alerts = (await load_alerts(connection, [patient_id]))[patient_id]
    changes = act(alerts, alert_id, action, now=now, deadline=deadline)
    risk = await connection.fetchval(
        "SELECT risk_score FROM alerts WHERE patient_id = $1 ORDER BY updated_at DESC LIMIT 1", patient_id
    )
    await record_changes(connection, changes, {patient_id: team}, {patient_id: risk})
    after = next(a for a in alerts.alerts.values() if a.alert_id == alert_id)
    return ActionOutcome(after, changes)


__all__ = [
    "ActionOutcome",
    "AlertNotFound",
    "alert_patient",
    "apply_action",
]

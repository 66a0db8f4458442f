"""What a counselor does to an alert: acknowledge it, snooze it, resolve it. Pure.

An action is decided on the patient's live alerts as they stand at ``now``: whatever fell due by
then happens first (an escalation that was due before the acknowledgement is recorded as such), then
the action. The store applies the returned changes under the patient's lock
(``store/counselor_actions.py``); the API checks who may act and audits the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from iopcare.contract import AcknowledgementOutcome
from iopcare.domain.alerts import AlertError, Change, Deadline, PatientAlerts


@dataclass(frozen=True)
class Acknowledge:
    """Seen and being acted on: it stops escalating. ``outcome``: what the counselor did about it
    (contacted the patient, changed the plan, no action needed, false alarm)."""

    by: str
    note: str | None = None
    outcome: AcknowledgementOutcome | None = None


@dataclass(frozen=True)
class Snooze:
    """Put aside until ``until``, with a reason; it reopens then."""

    by: str
    until: datetime
    reason: str


@dataclass(frozen=True)
class Resolve:
    """Closed by the counselor, with the reason."""

    by: str
    reason: str


CounselorAction = Acknowledge | Snooze | Resolve


def act(
    alerts: PatientAlerts, alert_id: str, action: CounselorAction, *, now: datetime, deadline: Deadline
) -> list[Change]:
    """The changes ``action`` makes to the alert ``alert_id`` of these live alerts at ``now``, due
    ones first. Raises :class:`~iopcare.domain.alerts.AlertError` when the alert is not live (it is
    resolved, or not this patient's) or the action cannot be taken (a snooze ending in the past)."""
    if all(a.alert_id != alert_id for a in alerts.alerts.values()):
        raise AlertError("the alert is already resolved")
    changes = alerts.due(now, deadline)
    match action:
        case Acknowledge(by=by, note=note, outcome=outcome):
            changes.append(alerts.acknowledge(alert_id, by, now, note, outcome))
        case Snooze(by=by, until=until, reason=reason):
            changes.append(alerts.snooze(alert_id, by, until, reason, now))
        case Resolve(by=by, reason=reason):
            changes += alerts.resolve(alert_id, by, reason, now, deadline)
    return changes


__all__ = ["Acknowledge", "CounselorAction", "Resolve", "Snooze", "act"]

"""The alert lifecycle, modelled on PagerDuty and Alertmanager. Pure: every decision takes ``now``.

Alert fatigue is the enemy (docs/rules.md, "Clinical background"), so a rule's :class:`Signal` does
not simply become an alert:

- **Dedup**: one alert per patient + rule + episode. A repeat trigger in the same episode updates the
  open alert (occurrence count, latest evidence, severity raised if it rose) instead of raising another,
  also when the rule's name for a long episode has moved on (``Signal.continues_within``).
  An acknowledged alert keeps counting but stops asking for attention.
- **Inhibition**: while a critical alert is open for a patient, lesser new alerts are recorded but
  marked inhibited: no notification, no escalation, until the critical one is resolved.
- **Supersession**: a step-up recommendation summarizes the engagement alerts behind it: those are
  resolved, with the reason, when it is raised, and while it is live those rules open no new alert
  (a long run of misses renamed as its first miss ages out would otherwise page again and again).
- **Escalation**: an alert nobody acknowledged by its severity's response deadline (critical 15 min,
  high 4 h, medium 24 h, low next business day) escalates to the supervisor, once; only an alert of
  the page tier escalates (an inbox or digest item is shown, not chased).
- **Snooze**: until a time, with a reason; it comes back open (with a fresh deadline) when that passes.
- **Resolution**: by a counselor, or automatically when the rule reports the condition cleared.
- **Discharge**: the program is over: the patient's alerts resolve with the discharge as the reason,
  but an open safety alert is handed to the supervisor (escalated with the reason), never dropped.

Every change is a :class:`Change` naming who and when; the store records each one and publishes it as
an alert event. Alert ids are derived from the dedup key, so the live processor and an offline
replay of the same events produce the same alerts.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from iopcare.contract import AcknowledgementOutcome, AlertEventKind, AlertState, Severity, Tier
from iopcare.domain.signals import SEVERITY_RANK, Clearance, FactValue, Finding, Signal

SYSTEM = "system"
"""The actor of changes nobody made by hand (triggers, automatic resolution, escalation)."""

_ALERT_IDS = uuid.UUID("6b1c1f3e-92a4-4c55-8f0e-4b7f3d3c2a10")  # namespace of alert ids

Deadline = Callable[[Severity, datetime], datetime | None]
"""When an alert of a severity raised at a time must have been acknowledged (None: never escalates)."""


def alert_id_for(dedup_key: str) -> str:
    """The alert's id: the same dedup key gives the same id, live or in a replay."""
    return str(uuid.uuid5(_ALERT_IDS, dedup_key))


@dataclass(frozen=True)
class Alert:
    """An alert about one patient, as the counselor's inbox shows it."""

    alert_id: str
    dedup_key: str
    patient_id: str
    rule_id: str
    rule_version: str
    rule_pack_version: str
    severity: Severity
    state: AlertState
    title: str
    explanation: str
    recommended_action: str
    event_ids: tuple[str, ...]
    facts: Mapping[str, FactValue]
    occurrences: int
    first_seen_at: datetime  # event time of the first trigger
    last_seen_at: datetime  # event time of the latest trigger
    raised_at: datetime  # when the alert was created (the clock of the lifecycle, not event time)
    escalate_at: datetime | None = None  # response deadline while open and unacknowledged
    escalated: bool = False
    snoozed_until: datetime | None = None
    inhibited_by: str | None = None  # id of the critical alert that silences this one
    resolution: str | None = None  # why it was resolved
    tier: Tier = "page"  # how it reaches the counselor: only a page escalates (and is pushed)
    acknowledgement_outcome: AcknowledgementOutcome | None = None  # what the counselor did about it

    def deadline_for(self, deadline: Deadline, severity: Severity, at: datetime) -> datetime | None:
        """Its response deadline for ``severity`` from ``at``: none unless it pages."""
        return deadline(severity, at) if self.tier == "page" else None

    @property
    def live(self) -> bool:
        """Not resolved: still in the counselor's inbox."""
        return self.state != "resolved"


@dataclass(frozen=True)
class Change:
    """One transition of one alert: the alert after it, what happened, who did it, when and why."""

    kind: AlertEventKind
    alert: Alert
    actor: str
    at: datetime
    from_state: AlertState | None  # None for a creation
    reason: str | None = None


class AlertError(ValueError):
    """A counselor's action that does not apply (unknown alert, already resolved, snooze in the past)."""


@dataclass
class PatientAlerts:
    """A patient's live alerts and the decisions about them. Built from the store, changed in place."""

    patient_id: str
    alerts: dict[str, Alert] = field(default_factory=dict)  # by dedup key; live ones, plus any
    # resolved ones the caller loaded or that were resolved here
    closed: set[str] = field(default_factory=set)  # dedup keys of resolved alerts not loaded: a
    # resolved episode never opens again, and its key is all that is needed to know that

    @classmethod
    def of(cls, patient_id: str, alerts: Iterable[Alert], closed: Iterable[str] = ()) -> PatientAlerts:
        return cls(patient_id, {a.dedup_key: a for a in alerts}, set(closed))

    def _critical_open(self) -> Alert | None:
        open_critical = [a for a in self.alerts.values() if a.live and a.severity == "critical"]
        return min(open_critical, key=lambda a: (a.raised_at, a.alert_id)) if open_critical else None

    def take(
        self,
        findings: Iterable[Finding],
        *,
        pack_version: str,
        now: datetime,
        deadline: Deadline,
        inhibit: bool = True,
        summarized_by: Mapping[str, frozenset[str]] | None = None,
        tier_of: Callable[[str], Tier] | None = None,
        unowned: bool = False,
    ) -> list[Change]:
        """Apply what the rules found (in order) and return the changes. ``summarized_by``: for a
        rule, the rules whose live alert already stands for it (a step-up recommendation summarizes
        the engagement alerts behind it): while one is live, the rule opens no new alert.
        ``tier_of``: a rule's tier (default: every alert pages), unless the signal names its own.
        ``unowned``: the patient has no counselor yet (an event before the enrollment): a new alert
        goes to the supervisor queue at once (escalated), never waits unseen for an enrollment."""
        changes: list[Change] = []
        for finding in findings:
            if isinstance(finding, Clearance):
                changes.extend(self._clear(finding, now, deadline))
            else:
                summary = (summarized_by or {}).get(finding.rule_id, frozenset())
                tier: Tier = finding.tier or (tier_of(finding.rule_id) if tier_of is not None else "page")
                made = self._signal(finding, pack_version, now, deadline, inhibit, summary, tier)
                changes.extend(made)
                if unowned:
                    changes.extend(self._to_the_supervisor_queue(made, now))
        return changes

    def _to_the_supervisor_queue(self, made: list[Change], now: datetime) -> list[Change]:
        escalated: list[Change] = []
        for change in made:
            if change.kind != "created":
                continue
            alert = self.alerts[change.alert.dedup_key]
            if alert.live and not alert.escalated:
                queued = replace(alert, escalated=True, escalate_at=None)
                self.alerts[alert.dedup_key] = queued
                reason = "no counselor yet (before the enrollment): to the supervisor queue at once"
                escalated.append(Change("escalated", queued, SYSTEM, now, alert.state, reason))
        return escalated

    def _summarized(self, by: frozenset[str]) -> bool:
        return bool(by) and any(a.live and a.rule_id in by for a in self.alerts.values())

    def _signal(
        self,
        signal: Signal,
        pack_version: str,
        now: datetime,
        deadline: Deadline,
        inhibit: bool,
        summarized_by: frozenset[str] = frozenset(),
        tier: Tier = "page",
    ) -> list[Change]:
        key = signal.dedup_key(self.patient_id)
        current = self.alerts.get(key)
        closed = current is None and key in self.closed
        if current is None and not closed and signal.continues_within is not None:
            current = self._continued(signal.rule_id, signal.at, signal.continues_within)
            if current is not None:
                key = current.dedup_key
        changes: list[Change] = []
        if closed:
            pass  # a resolved episode stays resolved
        elif current is None and self._summarized(summarized_by):
            pass  # a live recommendation (step up) already stands for it: no new alert
        elif current is None:
            critical = self._critical_open() if inhibit else None
            inhibited_by = (
                critical.alert_id
                if critical is not None and SEVERITY_RANK[signal.severity] > SEVERITY_RANK["critical"]
                else None
            )
            alert = Alert(
                alert_id=alert_id_for(key),
                dedup_key=key,
                patient_id=self.patient_id,
                rule_id=signal.rule_id,
                rule_version=signal.rule_version,
                rule_pack_version=pack_version,
                severity=signal.severity,
                state="open",
                title=signal.title,
                explanation=signal.explanation,
                recommended_action=signal.recommended_action,
                event_ids=signal.event_ids,
                facts=dict(signal.facts),
                occurrences=1,
                first_seen_at=signal.at,
                last_seen_at=signal.at,
                raised_at=now,
                escalate_at=None if inhibited_by or tier != "page" else deadline(signal.severity, now),
                inhibited_by=inhibited_by,
                tier=tier,
            )
            self.alerts[key] = alert
            changes.append(Change("created", alert, SYSTEM, now, None))
            if signal.severity == "critical" and inhibit:
                changes.extend(self._inhibit_lesser(alert, now))
        elif current.live:
            rises = SEVERITY_RANK[signal.severity] < SEVERITY_RANK[current.severity]
            waiting = current.state == "open" and not current.escalated and not current.inhibited_by
            updated = replace(
                current,
                severity=signal.severity if rises else current.severity,
                title=signal.title,
                explanation=signal.explanation,
                recommended_action=signal.recommended_action,
                event_ids=_merge_ids(current.event_ids, signal.event_ids),
                facts=dict(signal.facts),
                occurrences=current.occurrences + 1,
                first_seen_at=min(current.first_seen_at, signal.at),
                last_seen_at=max(current.last_seen_at, signal.at),
                # A rise in severity on an open alert tightens its deadline.
                escalate_at=(
                    _earliest(current.escalate_at, current.deadline_for(deadline, signal.severity, now))
                    if rises and waiting
                    else current.escalate_at
                ),
            )
            self.alerts[key] = updated
            changes.append(Change("updated", updated, SYSTEM, now, current.state))
        # A resolved episode stays resolved: the rule reopens nothing under the same key.
        for rule_id in signal.supersedes:
            for other in list(self.alerts.values()):
                if other.live and other.rule_id == rule_id and other.dedup_key != key:
                    reason = f"superseded by the {signal.rule_id} recommendation"
                    changes.extend(self._resolve(other, SYSTEM, reason, now, deadline))
        return changes

    def _continued(self, rule_id: str, at: datetime, within: timedelta) -> Alert | None:
        """The live alert of ``rule_id`` whose episode a trigger at ``at`` belongs to, though the rule
        now names it differently: its triggers span to within ``within`` of ``at``."""
        continued = [
            a
            for a in self.alerts.values()
            if a.live and a.rule_id == rule_id and a.first_seen_at - within <= at <= a.last_seen_at + within
        ]
        return max(continued, key=lambda a: (a.last_seen_at, a.alert_id)) if continued else None

    def _inhibit_lesser(self, critical: Alert, now: datetime) -> list[Change]:
        changes: list[Change] = []
        for other in list(self.alerts.values()):
            if other.live and other.severity != "critical" and other.inhibited_by is None:
                inhibited = replace(other, inhibited_by=critical.alert_id, escalate_at=None)
                self.alerts[other.dedup_key] = inhibited
                reason = f"inhibited while critical alert {critical.rule_id} is open"
                changes.append(Change("updated", inhibited, SYSTEM, now, other.state, reason))
        return changes

    def _clear(self, clearance: Clearance, now: datetime, deadline: Deadline) -> list[Change]:
        changes: list[Change] = []
        for alert in list(self.alerts.values()):
            if not alert.live or alert.rule_id != clearance.rule_id:
                continue
            episode_key = f"{self.patient_id}:{alert.rule_id}:{clearance.episode}"
            if clearance.episode is not None and alert.dedup_key != episode_key:
                within = clearance.continues_within
                if within is None or alert.last_seen_at >= clearance.at - within:
                    continue  # another episode, still going
            changes.extend(self._resolve(alert, SYSTEM, clearance.reason, now, deadline))
        return changes

    def _resolve(
        self, alert: Alert, actor: str, reason: str, now: datetime, deadline: Deadline | None = None
    ) -> list[Change]:
        resolved = replace(alert, state="resolved", resolution=reason, escalate_at=None, snoozed_until=None)
        self.alerts[alert.dedup_key] = resolved
        changes = [Change("resolved", resolved, actor, now, alert.state, reason)]
        if alert.severity == "critical" and self._critical_open() is None:
            changes.extend(self._lift_inhibition(alert, now, deadline))
        return changes

    def _lift_inhibition(self, critical: Alert, now: datetime, deadline: Deadline | None) -> list[Change]:
        changes: list[Change] = []
        for other in list(self.alerts.values()):
            if other.live and other.inhibited_by == critical.alert_id:
                due = (
                    other.deadline_for(deadline, other.severity, now)
                    if deadline and other.state == "open"
                    else None
                )
                lifted = replace(other, inhibited_by=None, escalate_at=due)
                self.alerts[other.dedup_key] = lifted
                reason = f"critical alert {critical.rule_id} resolved"
                changes.append(Change("updated", lifted, SYSTEM, now, other.state, reason))
        return changes

    # --- the care team --------------------------------------------------------------------------

    def handed_over(self, reason: str, now: datetime) -> list[Change]:
        """The patient's care team changed: every live alert is re-announced (``updated``, with the
        reason) so that it reaches the new counselor's inbox and webhooks; nothing else changes."""
        return [
            Change("updated", alert, SYSTEM, now, alert.state, reason)
            for alert in sorted(self.alerts.values(), key=lambda a: (a.raised_at, a.alert_id))
            if alert.live
        ]

    # --- the end of the program ----------------------------------------------------------------

    def discharged(self, words: str, now: datetime, never_close: frozenset[str]) -> list[Change]:
        """The patient was discharged (``words``: when and how, for the reasons): their alerts leave
        the counselor's inbox with that reason, except those of ``never_close`` rules (safety),
        which are handed to the supervisor instead (escalated, once), never silently dropped.
        Idempotent: called whenever a discharged patient's course moves, so the result depends on
        the state, not on whether the discharge arrived before or after the events behind an alert."""
        changes: list[Change] = []
        for alert in sorted(self.alerts.values(), key=lambda a: (a.raised_at, a.alert_id)):
            if not alert.live:
                continue
            if alert.rule_id in never_close:
                if not alert.escalated:
                    handed = replace(alert, escalated=True, escalate_at=None, inhibited_by=None)
                    self.alerts[alert.dedup_key] = handed
                    reason = f"{words}: the open {alert.rule_id} alert is handed to the supervisor"
                    changes.append(Change("escalated", handed, SYSTEM, now, alert.state, reason))
                continue
            changes.extend(self._resolve(alert, SYSTEM, words, now))
        return changes

    # --- what counselors do --------------------------------------------------------------------

    def _find(self, alert_id: str) -> Alert:
        for alert in self.alerts.values():
            if alert.alert_id == alert_id:
                return alert
        raise AlertError("no such alert for this patient")

    def acknowledge(
        self,
        alert_id: str,
        by: str,
        now: datetime,
        note: str | None = None,
        outcome: AcknowledgementOutcome | None = None,
    ) -> Change:
        """The counselor has seen it and is acting: it stops escalating and stops asking. ``outcome``
        records what they did about it (acknowledging again with another outcome replaces it; without
        one, an earlier outcome stays)."""
        alert = self._find(alert_id)
        if not alert.live:
            raise AlertError("the alert is resolved")
        acknowledged = replace(
            alert,
            state="acknowledged",
            escalate_at=None,
            snoozed_until=None,
            acknowledgement_outcome=outcome or alert.acknowledgement_outcome,
        )
        self.alerts[alert.dedup_key] = acknowledged
        return Change("acknowledged", acknowledged, by, now, alert.state, note)

    def snooze(self, alert_id: str, by: str, until: datetime, reason: str, now: datetime) -> Change:
        """Put it aside until ``until`` (with a reason); it returns open then, with a new deadline."""
        alert = self._find(alert_id)
        if not alert.live:
            raise AlertError("the alert is resolved")
        if until <= now:
            raise AlertError("a snooze must end in the future")
        snoozed = replace(alert, state="snoozed", snoozed_until=until, escalate_at=None)
        self.alerts[alert.dedup_key] = snoozed
        return Change("snoozed", snoozed, by, now, alert.state, reason)

    def resolve(
        self, alert_id: str, by: str, reason: str, now: datetime, deadline: Deadline | None = None
    ) -> list[Change]:
        """Close it, with the reason (and lift the inhibition a critical alert held)."""
        alert = self._find(alert_id)
        if not alert.live:
            raise AlertError("the alert is already resolved")
        return self._resolve(alert, by, reason, now, deadline)

    # --- what time does ------------------------------------------------------------------------

    def due(self, now: datetime, deadline: Deadline) -> list[Change]:
        """Escalate alerts past their deadline; reopen snoozes that ended.

        Each change is dated when it fell due (the deadline, the snooze's end), not when a sweep got
        to it, so a late sweep and an offline replay record the same history.
        """
        changes: list[Change] = []
        falling_due = [a for a in self.alerts.values() if _falls_due(a, now)]
        for alert in sorted(falling_due, key=lambda a: (a.raised_at, a.alert_id)):
            if alert.state == "snoozed" and alert.snoozed_until is not None and alert.snoozed_until <= now:
                ended = alert.snoozed_until
                reopened = replace(
                    alert,
                    state="open",
                    snoozed_until=None,
                    escalate_at=None
                    if alert.inhibited_by
                    else alert.deadline_for(deadline, alert.severity, ended),
                )
                self.alerts[alert.dedup_key] = reopened
                changes.append(Change("updated", reopened, SYSTEM, ended, "snoozed", "snooze ended"))
                alert = reopened
            if (
                alert.state == "open"
                and not alert.escalated
                and alert.escalate_at is not None
                and alert.escalate_at <= now
            ):
                overdue = alert.escalate_at
                escalated = replace(alert, escalated=True, escalate_at=None)
                self.alerts[alert.dedup_key] = escalated
                reason = f"not acknowledged within the {alert.severity} response target"
                changes.append(Change("escalated", escalated, SYSTEM, overdue, "open", reason))
        return changes

    def next_due(self) -> datetime | None:
        """The earliest time :meth:`due` has something to do."""
        earliest: datetime | None = None
        for alert in self.alerts.values():
            if alert.state == "open":
                at = alert.escalate_at
            elif alert.state == "snoozed":
                at = alert.snoozed_until
            else:
                continue
            if at is not None and (earliest is None or at < earliest):
                earliest = at
        return earliest


def _falls_due(alert: Alert, now: datetime) -> bool:
    """Has :meth:`PatientAlerts.due` something to do with this alert at ``now``?"""
    if alert.state == "snoozed":
        return alert.snoozed_until is not None and alert.snoozed_until <= now
    return (
        alert.state == "open"
        and not alert.escalated
        and alert.escalate_at is not None
        and alert.escalate_at <= now
    )


def _merge_ids(old: tuple[str, ...], new: tuple[str, ...], keep: int = 50) -> tuple[str, ...]:
    """Evidence ids of every trigger so far (the contract allows 50: the latest are kept)."""
    merged = list(dict.fromkeys(old + new))
    return tuple(merged[-keep:])


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    present = [t for t in (a, b) if t is not None]
    return min(present) if present else None


def fixed_deadlines(
    targets: Mapping[Severity, timedelta | None], business_day_start_hour: int = 9
) -> Deadline:
    """A :data:`Deadline` from response targets; a severity mapped to None gets the next business
    day's start (Monday to Friday, ``business_day_start_hour`` in the time zone of ``raised``)."""

    def deadline(severity: Severity, raised: datetime) -> datetime | None:
        if severity not in targets:
            return None
        target = targets[severity]
        if target is not None:
            return raised + target
        day = raised + timedelta(days=1)
        while day.weekday() >= 5:
            day += timedelta(days=1)
        return day.replace(hour=business_day_start_hour, minute=0, second=0, microsecond=0)

    return deadline


DEFAULT_DEADLINES = fixed_deadlines(
    {
        "critical": timedelta(minutes=15),
        "high": timedelta(hours=4),
        "medium": timedelta(hours=24),
        "low": None,
    }
)
"""docs/rules.md's response targets; info alerts never escalate."""

__all__ = [
    "DEFAULT_DEADLINES",
    "SYSTEM",
    "Alert",
    "AlertError",
    "Change",
    "Deadline",
    "PatientAlerts",
    "alert_id_for",
    "fixed_deadlines",
]

"""The offline run of the whole decision chain over past events: what ``iopcare replay`` reports.

:func:`iopcare.domain.rules.backtest.backtest` gives every finding the rules make, in the order and
at the (stream) time the processor makes them; here the alert lifecycle takes them, as the processor
does in the same transaction, and escalates alerts nobody acknowledged when the stream's time passes
their deadline, as the processor's sweep does. Nobody acknowledges anything in a backtest, so every
alert that would have paged someone is counted: the volume a clinic weighs before changing a number.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from iopcare.contract import InboundEvent
from iopcare.domain.alerts import Alert, Change, PatientAlerts, fixed_deadlines
from iopcare.domain.engagement import DEFAULT_TUNING, PatientState, Tuning
from iopcare.domain.rules.backtest import backtest as findings_over
from iopcare.domain.rules.pack import RulePack


@dataclass
class BacktestResult:
    """The alerts a rule pack would have raised over a stream of events."""

    pack_version: str
    events: int = 0
    patients: int = 0
    alerts: dict[str, Alert] = field(default_factory=dict)  # final snapshot, by dedup key
    changes: Counter[str] = field(default_factory=Counter)  # lifecycle changes by kind
    patient_weeks: float = 0.0  # enrolled patients' observed weeks (first to last event)

    def by_rule_and_severity(self) -> Counter[tuple[str, str]]:
        """Alerts (distinct dedup keys) by rule and final severity."""
        return Counter((a.rule_id, a.severity) for a in self.alerts.values())

    def per_patient_week(self) -> float:
        return len(self.alerts) / self.patient_weeks if self.patient_weeks else 0.0


def run_backtest(
    events: Iterable[InboundEvent],
    pack: RulePack,
    tuning: Tuning = DEFAULT_TUNING,
    *,
    until: datetime | None = None,
    on_event: Callable[[InboundEvent], None] | None = None,
) -> BacktestResult:
    """Rules and alert lifecycle over ``events`` (in the order given, ideally by time). Absence
    checks and escalations fall due up to ``until`` (default: the last event's time)."""
    deadline = fixed_deadlines(
        pack.response_targets_by_severity(), pack.response_targets.business_day_starts_at_hour
    )
    result = BacktestResult(pack_version=pack.version)
    alerts: dict[str, PatientAlerts] = {}
    escalations: list[tuple[datetime, str]] = []  # (next due, patient), possibly stale entries
    spans: dict[str, tuple[datetime, datetime]] = {}

    def counted(source: Iterable[InboundEvent]) -> Iterable[InboundEvent]:
        for event in source:
            # Escalations that fell due before this event come first, as in the processor's batch.
            escalate(event.time)
            result.events += 1
            first, last = spans.get(event.subject, (event.time, event.time))
            spans[event.subject] = (min(first, event.time), max(last, event.time))
            if on_event is not None:
                on_event(event)
            yield event

    def record(patient_id: str, changes: list[Change]) -> None:
        for change in changes:
            result.changes[change.kind] += 1
        next_due = alerts[patient_id].next_due()
        if next_due is not None:
            heapq.heappush(escalations, (next_due, patient_id))

    def escalate(up_to: datetime) -> None:
        while escalations and escalations[0][0] <= up_to:
            due_at, patient_id = heapq.heappop(escalations)
            changes = alerts[patient_id].due(due_at, deadline)
            if changes:
                record(patient_id, changes)

    states: dict[str, PatientState] = {}
    clock: datetime | None = None
    for found in findings_over(counted(events), pack, tuning, until=until, states=states):
        clock = found.at if clock is None or found.at > clock else clock
        escalate(clock)
        patient = alerts.setdefault(found.patient_id, PatientAlerts(found.patient_id))
        changes = patient.take([found.finding], pack_version=pack.version, now=found.at, deadline=deadline)
        if changes:
            record(found.patient_id, changes)
    if until is not None:
        escalate(until)
    elif spans:
        escalate(max(last for _, last in spans.values()))

    result.patients = len(states)
    result.alerts = {a.dedup_key: a for patient in alerts.values() for a in patient.alerts.values()}
    result.patient_weeks = sum(
        max((last - first) / timedelta(days=7), 1 / 7)
        for pid, (first, last) in spans.items()
        if states.get(pid) is not None and states[pid].enrollment is not None
    )
    return result


__all__ = ["BacktestResult", "run_backtest"]

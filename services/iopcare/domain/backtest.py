"""The offline run of the whole decision chain over an event file: what ``iopcare replay`` reports.

Same code as the live processor, in one process and in event-time order: each event goes through the
consent gate and the fold (:func:`~iopcare.domain.intake.take_in`), the rules look at the new state,
and the alert lifecycle decides; time moves with the events (the stream clock), so absence checks
fire, and unacknowledged alerts escalate, when the events' time passes theirs, exactly as the
processor's sweeps do on the stream clock. Nobody acknowledges anything in a backtest: every alert
that would page someone is counted, which is the volume a clinic weighs before changing a threshold.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from iopcare.contract import InboundEvent, Severity
from iopcare.domain.absence import AbsenceCheck
from iopcare.domain.alerts import Alert, Change, PatientAlerts
from iopcare.domain.engagement import DEFAULT_TUNING, PatientState, Tuning
from iopcare.domain.intake import Held, take_in
from iopcare.domain.signals import Finding


class RuleBook(Protocol):
    """What the processor and the backtest need from a rule pack."""

    @property
    def version(self) -> str: ...

    def on_event(self, state: PatientState, event: InboundEvent) -> list[Finding]:
        """Findings about ``state`` right after ``event`` was applied to it."""

    def due_checks(self, state: PatientState) -> set[AbsenceCheck]:
        """The time-based checks this state expects."""

    def on_due(self, state: PatientState, check: AbsenceCheck) -> list[Finding]:
        """Findings when ``check`` falls due."""

    def deadline(self, severity: Severity, raised: datetime) -> datetime | None:
        """The response deadline of an alert of ``severity`` raised at ``raised``."""


@dataclass
class BacktestResult:
    """Alerts a rule pack would have raised over a stream of events."""

    pack_version: str
    events: int = 0
    patients: int = 0
    alerts: dict[str, Alert] = field(default_factory=dict)  # final snapshot, by dedup key
    changes: Counter[str] = field(default_factory=Counter)  # by kind
    patient_weeks: float = 0.0  # observed weeks of enrolled patients (from first to last event)

    def by_rule_and_severity(self) -> Counter[tuple[str, str]]:
        return Counter((a.rule_id, a.severity) for a in self.alerts.values())

    def per_patient_week(self) -> float:
        return len(self.alerts) / self.patient_weeks if self.patient_weeks else 0.0


class Backtest:
    """Feed events in order with :meth:`take`; :meth:`finish` runs the clock to the last event."""

    def __init__(self, rules: RuleBook, tuning: Tuning = DEFAULT_TUNING) -> None:
        self.rules = rules
        self.tuning = tuning
        self.states: dict[str, PatientState] = {}
        self.held: dict[str, list[Held]] = {}
        self.alerts: dict[str, PatientAlerts] = {}
        self.clock: datetime | None = None
        self._checks: list[tuple[datetime, str, str, AbsenceCheck]] = []  # heap by due time
        self._scheduled: dict[str, set[AbsenceCheck]] = {}
        self._escalations: list[tuple[datetime, str]] = []  # heap of (next due, patient)
        self._spans: dict[str, tuple[datetime, datetime]] = {}
        self.result = BacktestResult(pack_version=rules.version)
        self.on_change: Callable[[Change], None] | None = None

    def take(self, event: InboundEvent) -> None:
        """One event, in arrival order; time moves forward to it first."""
        self._advance(event.time)
        pid = event.subject
        state = self.states.get(pid)
        if state is None:
            state = self.states[pid] = PatientState(patient_id=pid)
            self.alerts[pid] = PatientAlerts(pid)
        waiting = self.held.setdefault(pid, [])
        intake = take_in(state, event, waiting, self.tuning)
        if intake.held is not None:
            waiting.append(intake.held)
        for released in intake.released:
            waiting.remove(released)
        self.result.events += 1
        first, last = self._spans.get(pid, (event.time, event.time))
        self._spans[pid] = (min(first, event.time), max(last, event.time))
        findings = [f for applied in intake.applied for f in self.rules.on_event(state, applied)]
        self._decide(pid, findings, event.time)
        self._schedule(pid, state)

    def finish(self) -> BacktestResult:
        """Close the run at the last event's time and return the result."""
        result = self.result
        result.patients = len(self.states)
        result.alerts = {a.dedup_key: a for alerts in self.alerts.values() for a in alerts.alerts.values()}
        enrolled = {pid for pid, s in self.states.items() if s.enrollment is not None}
        result.patient_weeks = sum(
            max((last - first) / timedelta(days=7), 1 / 7)
            for pid, (first, last) in self._spans.items()
            if pid in enrolled
        )
        return result

    def _decide(self, pid: str, findings: list[Finding], now: datetime) -> None:
        if not findings:
            return
        changes = self.alerts[pid].take(
            findings, pack_version=self.rules.version, now=now, deadline=self.rules.deadline
        )
        self._record(pid, changes)

    def _record(self, pid: str, changes: list[Change]) -> None:
        for change in changes:
            self.result.changes[change.kind] += 1
            if self.on_change is not None:
                self.on_change(change)
        if changes:
            next_due = self.alerts[pid].next_due()
            if next_due is not None:
                heapq.heappush(self._escalations, (next_due, pid))

    def _schedule(self, pid: str, state: PatientState) -> None:
        expected = self.rules.due_checks(state)
        known = self._scheduled.setdefault(pid, set())
        for check in expected - known:
            heapq.heappush(self._checks, (check.due_at, pid, check.key, check))
        known |= expected

    def _advance(self, to: datetime) -> None:
        """Fire what fell due before ``to``, in due-time order (checks before escalations at a tie)."""
        if self.clock is not None and to <= self.clock:
            return
        while True:
            next_check = self._checks[0][0] if self._checks else None
            next_escalation = self._escalations[0][0] if self._escalations else None
            candidates = [t for t in (next_check, next_escalation) if t is not None and t <= to]
            if not candidates:
                break
            if next_check is not None and next_check == min(candidates):
                due_at, pid, _, check = heapq.heappop(self._checks)
                self._decide(pid, self.rules.on_due(self.states[pid], check), due_at)
            else:
                due_at, pid = heapq.heappop(self._escalations)
                self._record(pid, self.alerts[pid].due(due_at, self.rules.deadline))
        self.clock = to


def backtest(
    events: Iterable[InboundEvent], rules: RuleBook, tuning: Tuning = DEFAULT_TUNING
) -> BacktestResult:
    """Run ``rules`` over ``events`` (in the given order) and return what they would have raised."""
    run = Backtest(rules, tuning)
    for event in events:
        run.take(event)
    return run.finish()


__all__ = ["Backtest", "BacktestResult", "RuleBook", "backtest"]

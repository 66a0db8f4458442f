"""The offline run of the whole decision chain over past events: what ``iopcare replay`` reports.

:func:`iopcare.domain.rules.backtest.backtest` gives every finding the rules make, in the order and
at the (stream) time the processor makes them; here the alert lifecycle takes them, as the processor
does in the same transaction, and escalates alerts nobody acknowledged when the stream's time passes
their deadline, as the processor's sweep does. Nobody acknowledges anything in a backtest, so every
alert that would have paged someone is counted: the volume a clinic weighs before changing a number.

Each patient's alerts depend only on that patient's events and on the stream clock: escalations of
one patient's alerts are decided on the clock and that patient's own findings, never on another
patient's. So a stream split by patient (the others' events passed as a :class:`Tick`) gives each
part exactly its patients' share of the whole result, and :func:`merged` adds the parts up.
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
from iopcare.domain.rules.backtest import Tick
from iopcare.domain.rules.backtest import backtest as findings_over
from iopcare.domain.rules.pack import RulePack

WEEK = timedelta(days=7)
SHORTEST_OBSERVATION = timedelta(days=1)  # a patient seen once still counts for a day


@dataclass
class BacktestResult:
    """The alerts a rule pack would have raised over a stream of events."""

    pack_version: str
    events: int = 0
    patients: int = 0
    alerts: dict[str, Alert] = field(default_factory=dict)  # final snapshot, by dedup key (sorted)
    changes: Counter[str] = field(default_factory=Counter)  # lifecycle changes by kind
    observed: timedelta = timedelta(0)  # enrolled patients' observed time (first to last event), summed

    @property
    def patient_weeks(self) -> float:
        """Enrolled patients' observed weeks: the denominator of alert volume."""
        return self.observed / WEEK

    def by_rule_and_severity(self) -> Counter[tuple[str, str]]:
        """Alerts (distinct dedup keys) by rule and final severity."""
        return Counter((a.rule_id, a.severity) for a in self.alerts.values())

    def per_patient_week(self) -> float:
        return len(self.alerts) / self.patient_weeks if self.patient_weeks else 0.0


def run_backtest(
    events: Iterable[InboundEvent | Tick],
    pack: RulePack,
    tuning: Tuning = DEFAULT_TUNING,
    *,
    until: datetime | None = None,
    on_event: Callable[[InboundEvent], None] | None = None,
) -> BacktestResult:
    """Rules and alert lifecycle over ``events`` (in the order given, ideally by time). Absence
    checks and escalations fall due up to ``until`` (default: the latest event's time).

    A :class:`Tick` stands for an event of a patient handled elsewhere: it only moves the clock.
    """
    deadline = fixed_deadlines(
        pack.response_targets_by_severity(), pack.response_targets.business_day_starts_at_hour
    )
    result = BacktestResult(pack_version=pack.version)
    alerts: dict[str, PatientAlerts] = {}
    escalations: list[tuple[datetime, str]] = []  # (next due, patient), possibly stale entries
    next_due: dict[str, datetime | None] = {}  # per patient, as of its last change
    spans: dict[str, tuple[datetime, datetime]] = {}
    seen_until: dict[str, datetime] = {}  # per patient: the latest time of a finding taken
    latest: datetime | None = None  # the stream clock: the latest event time so far
    settled: datetime | None = None  # the stream clock before the event being taken in

    def counted(source: Iterable[InboundEvent | Tick]) -> Iterable[InboundEvent | Tick]:
        nonlocal latest, settled
        for event in source:
            at = event.time
            settled = latest
            latest = at if latest is None or at > latest else latest
            # Escalations that fell due before this event come first, as in the processor's batch.
            if escalations and escalations[0][0] <= at:
                escalate(at)
            if not isinstance(event, Tick):
                result.events += 1
                span = spans.get(event.subject)
                if span is None:
                    spans[event.subject] = (at, at)
                elif at < span[0] or at > span[1]:
                    spans[event.subject] = (min(span[0], at), max(span[1], at))
                if on_event is not None:
                    on_event(event)
            yield event
        settled = latest

    def record(patient_id: str, changes: list[Change]) -> None:
        for change in changes:
            result.changes[change.kind] += 1
        due = next_due[patient_id] = alerts[patient_id].next_due()
        if due is not None:
            heapq.heappush(escalations, (due, patient_id))

    def escalate(up_to: datetime) -> None:
        while escalations and escalations[0][0] <= up_to:
            due_at, patient_id = heapq.heappop(escalations)
            changes = alerts[patient_id].due(due_at, deadline)
            if changes:
                record(patient_id, changes)

    states: dict[str, PatientState] = {}
    for found in findings_over(counted(events), pack, tuning, until=until, states=states):
        patient_id = found.patient_id
        patient = alerts.get(patient_id)
        if patient is None:
            patient = alerts[patient_id] = PatientAlerts(patient_id)
        # The patient's escalations that fell due before this event arrived, or by the time of its
        # latest finding, come first.
        clock = seen_until.get(patient_id)
        clock = found.at if clock is None or found.at > clock else clock
        seen_until[patient_id] = clock
        if settled is not None and settled > clock:
            clock = settled
        due = next_due.get(patient_id)
        if due is not None and due <= clock:
            changes = patient.due(clock, deadline)
            if changes:
                record(patient_id, changes)
        changes = patient.take([found.finding], pack_version=pack.version, now=found.at, deadline=deadline)
        if changes:
            record(patient_id, changes)
    end = until if until is not None else latest
    if end is not None:
        escalate(end)

    result.patients = len(states)
    result.alerts = dict(
        sorted((a.dedup_key, a) for patient in alerts.values() for a in patient.alerts.values())
    )
    result.observed = sum(
        (
            max(last - first, SHORTEST_OBSERVATION)
            for pid, (first, last) in spans.items()
            if states[pid].enrollment is not None
        ),
        timedelta(0),
    )
    return result


def merged(parts: Iterable[BacktestResult]) -> BacktestResult:
    """One result from the results of disjoint sets of patients over the same stream (shards)."""
    parts = list(parts)
    total = BacktestResult(pack_version=parts[0].pack_version)
    for part in parts:
        if part.pack_version != total.pack_version:
            raise ValueError("shards of one backtest ran different rule packs")
        total.events += part.events
        total.patients += part.patients
        total.changes.update(part.changes)
        total.observed += part.observed
        total.alerts.update(part.alerts)
    total.alerts = dict(sorted(total.alerts.items()))
    return total


__all__ = ["BacktestResult", "Tick", "merged", "run_backtest"]

"""Run the rules over past events as the processor would, offline. Pure.

Events are taken in (consent gate + fold) in the order given; after each, the event rules run on
every event the intake applied; absence checks fire when the *stream clock* (the latest event time
seen) passes their due time, before the event that moved the clock is taken in, exactly like the
processor's sweep on the stream clock. What comes out is every finding with its cause, from which a
backtest counts alerts (distinct dedup keys) per rule, patient or severity.

Patients are independent except for that clock, so a long stream can be split by patient across
processes: each one takes in its own patients' events and sees the others' only as a :class:`Tick`
(their time), and its findings about its patients are exactly those of the whole run.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from iopcare.contract import InboundEvent
from iopcare.domain.absence import (
    CHECKS_CHANGE_AFTER,
    PROGRAM_CHECKS_CHANGE_AFTER,
    AbsenceCheck,
    findings_at,
    program_checks,
    silence_checks,
)
from iopcare.domain.engagement import DEFAULT_TUNING, PatientState, Tuning
from iopcare.domain.intake import Held, take_in
from iopcare.domain.rules.events import evaluate_event
from iopcare.domain.rules.pack import DEFAULT_PACK, RulePack
from iopcare.domain.signals import Finding


@dataclass(frozen=True, slots=True)
class Tick:
    """The time of an event about a patient followed elsewhere (another shard of the same stream):
    it moves the stream clock, so absence checks fall due as in the whole stream; nothing is taken in."""

    time: datetime


@dataclass(frozen=True)
class Found:
    """One finding about one patient, and what caused it: an event id or an absence check key."""

    patient_id: str
    finding: Finding
    cause: str
    at: datetime  # the stream clock when it was found: the event's time, or the check's due time


@dataclass
class _Patient:
    state: PatientState
    held: list[Held] = field(default_factory=list)
    # What due_checks says, in its two parts: the program's checks change only with the
    # enrollment, the silence checks with every check-in.
    program: frozenset[AbsenceCheck] = frozenset()
    silence: tuple[AbsenceCheck, ...] = ()
    scheduled: set[str] = field(default_factory=set)  # keys ever put on the clock

    def expects(self, check: AbsenceCheck) -> bool:
        """``check in due_checks(state)``, from the two parts kept."""
        if check.kind == "checkin_silence":
            return check in self.silence
        return check in self.program


def backtest(
    events: Iterable[InboundEvent | Tick],
    pack: RulePack = DEFAULT_PACK,
    tuning: Tuning = DEFAULT_TUNING,
    *,
    until: datetime | None = None,
    states: dict[str, PatientState] | None = None,
) -> Iterator[Found]:
    """Every finding the rules make over ``events``, in the order the processor would make them.

    Absence checks due by ``until`` (default: the last event time) fire at the end. Pass a dict as
    ``states`` to keep the patients' final states. A :class:`Tick` in ``events`` only moves the clock.
    """
    patients: dict[str, _Patient] = {}
    clock: list[tuple[datetime, int, str, AbsenceCheck]] = []  # (due, tie-break, patient, check)
    tie = itertools.count()
    now: datetime | None = None

    def sweep(up_to: datetime) -> Iterator[Found]:
        while clock and clock[0][0] <= up_to:
            _, _, patient_id, check = heapq.heappop(clock)
            patient = patients[patient_id]
            # Each key is on the clock once, so each check fires once; unless superseded (a
            # check-in came, a discharge).
            if patient.expects(check):
                for finding in findings_at(patient.state, check, pack):
                    yield Found(patient_id, finding, check.key, check.due_at)

    for event in events:
        now = event.time if now is None or event.time > now else now
        if clock and clock[0][0] <= now:
            yield from sweep(now)
        if isinstance(event, Tick):
            continue
        patient = patients.get(event.subject)
        if patient is None:
            patient = patients[event.subject] = _Patient(PatientState(patient_id=event.subject))
        intake = take_in(patient.state, event, patient.held, tuning)
        if intake.held is not None:
            patient.held.append(intake.held)
        for released in intake.released:
            patient.held.remove(released)
        for applied in intake.applied:
            for finding in evaluate_event(patient.state, applied, pack):
                yield Found(event.subject, finding, applied.id, applied.time)
        if isinstance(event, CHECKS_CHANGE_AFTER):
            program = patient.program
            if isinstance(event, PROGRAM_CHECKS_CHANGE_AFTER):
                program = program_checks(patient.state, pack)
            patient.silence = silence_checks(patient.state, pack)
            changed = program is not patient.program and program != patient.program
            patient.program = program
            # In a fixed order: checks due at the same time fire in the order they were put on the clock.
            for check in (*patient.silence, *sorted(program)) if changed else patient.silence:
                if check.key not in patient.scheduled:
                    patient.scheduled.add(check.key)
                    heapq.heappush(clock, (check.due_at, next(tie), event.subject, check))
    end = until or now
    if end is not None:
        yield from sweep(end)
    if states is not None:
        states.update({patient_id: patient.state for patient_id, patient in patients.items()})


__all__ = ["Found", "Tick", "backtest"]

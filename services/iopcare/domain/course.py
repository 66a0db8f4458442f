"""A patient's course in the program: the one place that decides what happens to a patient. Pure.

Everything iopcare does about one patient is a sequence of two moves, made on this object:

- :meth:`PatientCourse.take` an event: fire the absence checks that fell due before it (the next
  check-in must not erase a silence that had already happened), escalate what fell due by then, let
  the consent gate and the fold take the event in (``domain/intake.py``), run the event rules on the
  new state, let the alert lifecycle take what they found (``domain/alerts.py``), and schedule or
  cancel the absence checks the new state expects (``domain/absence.py``);
- :meth:`PatientCourse.advance` to a time: fire the checks due by then and escalate the alerts nobody
  acknowledged (and reopen ended snoozes), each dated when it fell due.

Both return :class:`Effects`: what changed, for a driver to make durable. The drivers have no
decisions of their own: the processor's batch (``store/engagement.py``) loads the courses of a
batch's patients, takes each event and writes the effects in one transaction; the sweep advances the
courses that have something due; ``iopcare replay`` and the backtests (``domain/backtest.py``) run the
same courses over a file on the events' own clock. The live processor and a replay of the same events
therefore make the same decisions by construction; a test on the whole cohort keeps it so.

Time. ``take(event)`` decides on the events' own clock (the alerts' lifecycle times are the events'
times, as a replay's are); ``take(event, now=...)`` uses ``now`` for the lifecycle (the processor on
the wall clock). :meth:`advance` is idempotent in time: advancing to ``t1`` and then to ``t2`` leaves
every alert as advancing to ``t2`` once does, because each check and escalation is dated when it
fell due, not when a driver came by. So when a sweep happens to run never changes what is decided.

Checks. Each check key fires at most once: the pending checks are those the state expects and that
have not fired. A program's checks (its week closes, its day-21 check) can be expected again after a
discharge and a re-enrollment with the same program start, so their fired keys are remembered
(``fired``: a dozen or so per program). A silence check is keyed by the check-in (or enrollment) it
counts from, which only ever moves on to a later one, so a fired silence key is never expected again
and need not be remembered.
"""

from __future__ import annotations

from collections.abc import Iterable
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
from iopcare.domain.alerts import Change, Deadline, PatientAlerts, fixed_deadlines
from iopcare.domain.engagement import PatientState, Tuning
from iopcare.domain.intake import Held, take_in
from iopcare.domain.risk import risk_score
from iopcare.domain.rules.events import evaluate_event
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.signals import Finding, Signal
from iopcare.domain.summary import CaseSummary, summarize


@dataclass(frozen=True, slots=True)
class Found:
    """One finding about one patient, and what caused it: an event id or an absence check key."""

    patient_id: str
    finding: Finding
    cause: str
    at: datetime  # the event's time, or the check's due time


@dataclass(slots=True)
class Effects:
    """What one or more moves of a course changed, in the order it happened."""

    applied: list[InboundEvent] = field(default_factory=list)  # the events taken in (with releases)
    late: int = 0
    held: list[Held] = field(default_factory=list)  # third-party reports kept out (consent)
    released: list[tuple[Held, str]] = field(default_factory=list)  # (report, id of the releasing grant)
    scheduled: list[AbsenceCheck] = field(default_factory=list)
    cancelled: list[AbsenceCheck] = field(default_factory=list)  # superseded before they fell due
    fired: list[tuple[AbsenceCheck, bool]] = field(default_factory=list)  # (check, found a signal)
    findings: list[Found] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)  # the alert lifecycle's transitions

    @property
    def state_changed(self) -> bool:
        """The patient's state (the fold) changed: it must be written."""
        return bool(self.applied)

    def __bool__(self) -> bool:
        return bool(
            self.applied
            or self.held
            or self.scheduled
            or self.cancelled
            or self.fired
            or self.findings
            or self.changes
        )

    def extend(self, other: Effects) -> None:
        """Add what later moves did."""
        self.applied += other.applied
        self.late += other.late
        self.held += other.held
        self.released += other.released
        self.scheduled += other.scheduled
        self.cancelled += other.cancelled
        self.fired += other.fired
        self.findings += other.findings
        self.changes += other.changes


def deadlines_of(pack: RulePack) -> Deadline:
    """The response deadlines of a pack's targets (what escalation compares with)."""
    return fixed_deadlines(
        pack.response_targets_by_severity(), pack.response_targets.business_day_starts_at_hour
    )


PROGRAM_CHECK_KINDS = frozenset({"week_close", "family_therapy_due"})
"""Check kinds whose fired keys a course remembers (see the module docstring)."""


NEVER_CLOSED_BY_DISCHARGE = frozenset({"safety"})
"""Rules whose open alerts a discharge hands to the supervisor instead of resolving."""


class PatientCourse:
    """One patient's state, held reports, pending checks and alerts, and the moves that change them."""

    __slots__ = (
        "_expected_program",
        "_expected_silence",
        "_next_check",
        "alerts",
        "deadline",
        "fired",
        "held",
        "pack",
        "pending",
        "state",
        "tuning",
    )

    def __init__(
        self,
        state: PatientState,
        pack: RulePack,
        tuning: Tuning | None = None,
        *,
        deadline: Deadline | None = None,
        alerts: PatientAlerts | None = None,
        held: Iterable[Held] = (),
        pending: Iterable[AbsenceCheck] = (),
        fired: Iterable[str] = (),
    ) -> None:
        """A course as stored: ``pending`` are the checks scheduled and not fired, ``fired`` the
        fired keys of program checks, ``alerts`` the live alerts (and the keys of resolved ones).

        ``held`` must hold the patient's held reports whenever an event taken may release them (a
        consent grant); a driver that loads them only then loses nothing.
        """
        self.state = state
        self.pack = pack
        self.tuning = pack.tuning if tuning is None else tuning
        self.deadline = deadline if deadline is not None else deadlines_of(pack)
        self.alerts = alerts if alerts is not None else PatientAlerts(state.patient_id)
        self.held = list(held)
        self.pending: dict[str, AbsenceCheck] = {check.key: check for check in pending}
        self.fired: set[str] = set(fired)
        self._expected_program = program_checks(state, pack)
        self._expected_silence = silence_checks(state, pack)
        self._next_check = min(self.pending.values(), default=None)

    @classmethod
    def new(cls, patient_id: str, pack: RulePack, tuning: Tuning | None = None) -> PatientCourse:
        """The course of a patient nothing is known about yet."""
        return cls(PatientState(patient_id=patient_id), pack, tuning)

    @property
    def patient_id(self) -> str:
        return self.state.patient_id

    # --- the two moves --------------------------------------------------------------------------

    def take(self, event: InboundEvent, now: datetime | None = None) -> Effects:
        """Take one event about this patient (see the module docstring). ``now`` is the lifecycle's
        time for what the event leads to; by default the event's own time."""
        effects = Effects()
        self._fire_due(event.time, effects)
        self._escalate(event.time if now is None else now, effects)
        team = self.state.care_team
        intake = take_in(self.state, event, self.held, self.tuning)
        if intake.held is not None:
            self.held.append(intake.held)
            effects.held.append(intake.held)
        for released in intake.released:
            self.held.remove(released)
            effects.released.append((released, event.id))
        effects.late += intake.late
        for applied in intake.applied:
            effects.applied.append(applied)
            found = evaluate_event(self.state, applied, self.pack)
            if found:
                self._decide(found, applied.id, applied.time, applied.time if now is None else now, effects)
        if intake.applied and isinstance(event, CHECKS_CHANGE_AFTER):
            self._reschedule(isinstance(event, PROGRAM_CHECKS_CHANGE_AFTER), effects)
        if self.state.care_team is not None and self.state.care_team != team:
            counselor, supervisor = self.state.care_team
            what = "care team changed" if team is not None else "counselor assigned at enrollment"
            reason = f"{what}: counselor {counselor}, supervisor {supervisor}"
            effects.changes += self.alerts.handed_over(reason, event.time if now is None else now)
        self._after_discharge(event.time if now is None else now, effects)
        return effects

    def advance(self, now: datetime) -> Effects:
        """Fire the checks due by ``now`` and escalate what fell due, each dated when it fell due."""
        effects = Effects()
        self._fire_due(now, effects)
        self._escalate(now, effects)
        self._after_discharge(now, effects)
        return effects

    def next_due(self) -> datetime | None:
        """The earliest time :meth:`advance` has something to do (None: nothing ever, as things are)."""
        alert_due = self.alerts.next_due()
        check = self._next_check
        if check is None:
            return alert_due
        if alert_due is None or check.due_at < alert_due:
            return check.due_at
        return alert_due

    def summary(self, as_of: datetime | None = None) -> CaseSummary:
        """The case summary (what the API shows) judged at ``as_of``, by default the latest event."""
        return summarize(self.state, self.state.high_water if as_of is None else as_of, self.pack)

    def risk_score(self) -> int | None:
        """The relapse-risk score as of the latest event (None before any)."""
        as_of = self.state.high_water
        return None if as_of is None else risk_score(self.state, as_of, self.pack).score

    # --- the steps ------------------------------------------------------------------------------

    def _decide(
        self, found: list[Finding], cause: str, at: datetime, now: datetime, effects: Effects
    ) -> None:
        """The lifecycle takes what the rules found at ``now``, after what fell due by then."""
        patient_id = self.state.patient_id
        effects.findings.extend(Found(patient_id, finding, cause, at) for finding in found)
        self._escalate(now, effects)
        effects.changes += self.alerts.take(
            found,
            pack_version=self.pack.version,
            now=now,
            deadline=self.deadline,
            inhibit=self.pack.lifecycle.critical_inhibits_lesser,
            summarized_by=self.pack.summarized_by,
            tier_of=self.pack.tier,
            unowned=self.state.care_team is None,
        )

    def _after_discharge(self, now: datetime, effects: Effects) -> None:
        """A discharged patient keeps no alert in the counselor's inbox: whatever the order the
        discharge and the events before it arrived in, the alerts end the same (alerts.py)."""
        discharge = self.state.discharge
        if discharge is None or not any(a.live for a in self.alerts.alerts.values()):
            return
        how = discharge.disposition.replace("_", " ")
        words = f"patient discharged on {discharge.discharged_on.isoformat()} ({how})"
        effects.changes += self.alerts.discharged(words, now, NEVER_CLOSED_BY_DISCHARGE)

    def _escalate(self, now: datetime, effects: Effects) -> None:
        due = self.alerts.next_due()
        if due is not None and due <= now:
            effects.changes += self.alerts.due(now, self.deadline)

    def _fire_due(self, up_to: datetime, effects: Effects) -> None:
        """Fire the pending checks due by ``up_to``, earliest first (ties by key)."""
        while self._next_check is not None and self._next_check.due_at <= up_to:
            check = self._next_check
            del self.pending[check.key]
            self._next_check = min(self.pending.values(), default=None)
            if check.kind in PROGRAM_CHECK_KINDS:
                self.fired.add(check.key)
            found = findings_at(self.state, check, self.pack)
            effects.fired.append((check, any(isinstance(f, Signal) for f in found)))
            if found:
                self._decide(found, check.key, check.due_at, check.due_at, effects)

    def _reschedule(self, program_may_change: bool, effects: Effects) -> None:
        """Put on the clock the checks the state now expects; cancel pending ones it no longer does."""
        before_program, before_silence = self._expected_program, self._expected_silence
        program = program_checks(self.state, self.pack) if program_may_change else before_program
        silence = silence_checks(self.state, self.pack)
        self._expected_program, self._expected_silence = program, silence
        if silence == before_silence and program is before_program:
            return
        expected = {*program, *silence}
        for check in sorted(expected - {*before_program, *before_silence}):
            if check.key not in self.pending and check.key not in self.fired:
                self.pending[check.key] = check
                effects.scheduled.append(check)
        for check in sorted({*before_program, *before_silence} - expected):
            if self.pending.pop(check.key, None) is not None:
                effects.cancelled.append(check)
        self._next_check = min(self.pending.values(), default=None)


__all__ = ["PROGRAM_CHECK_KINDS", "Effects", "Found", "PatientCourse", "deadlines_of"]

"""The offline run of the whole decision chain over past events: what ``iopcare replay`` reports.

A driver, no decisions of its own: each patient's :class:`~iopcare.domain.course.PatientCourse`
takes that patient's events in the order given, and is advanced whenever the *stream clock* (the
latest event time seen) passes the time it has something due (an absence check, an escalation),
before the event that moved the clock is taken: as the processor's sweep does on its stream clock.
Nobody acknowledges anything in a backtest, so every alert that would have paged someone is
counted: the volume a clinic weighs before changing a number.

Each patient's course depends only on that patient's events and on when it is advanced, and
advancing is idempotent in time (course.py). So a stream split by patient (the others' events
passed as a :class:`Tick`, which only moves the clock) gives each part exactly its patients' share
of the whole result, and :func:`merged` adds the parts up.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from iopcare.contract import InboundEvent
from iopcare.domain.alerts import Alert
from iopcare.domain.course import Effects, Found, PatientCourse, deadlines_of
from iopcare.domain.engagement import PatientState, Tuning
from iopcare.domain.rules.pack import RulePack

WEEK = timedelta(days=7)
SHORTEST_OBSERVATION = timedelta(days=1)  # a patient seen once still counts for a day


@dataclass(frozen=True, slots=True)
class Tick:
    """The time of an event about a patient followed elsewhere (another shard of the same stream):
    it moves the stream clock, so checks and escalations fall due as in the whole stream."""

    time: datetime


class StreamReplay:
    """Courses of every patient in a stream, on the stream's own clock."""

    def __init__(
        self, pack: RulePack, tuning: Tuning | None = None, *, until: datetime | None = None
    ) -> None:
        """``until``: nothing falls due after it, however far the events go (the processor's stream
        clock stops at the least advanced partition; a replay compared with it stops there too)."""
        self.pack = pack
        self.until = until
        self.tuning = pack.tuning if tuning is None else tuning
        self.deadline = deadlines_of(pack)
        self.courses: dict[str, PatientCourse] = {}
        self.clock: datetime | None = None
        self._wakeups: list[tuple[datetime, int, str]] = []  # (due, tie-break, patient)
        self._queued: dict[str, datetime] = {}  # each patient's live entry in _wakeups
        self._tie = itertools.count()

    def feed(self, event: InboundEvent | Tick) -> Iterator[tuple[str, Effects]]:
        """Move the clock to the event's time (advancing the courses due by then), then take it."""
        at = event.time
        if self.clock is None or at > self.clock:
            self.clock = at
        now = self.clock if self.until is None or self.clock < self.until else self.until
        if self._wakeups and self._wakeups[0][0] <= now:
            yield from self._wake(now)
        if isinstance(event, Tick):
            return
        patient_id = event.subject
        course = self.courses.get(patient_id)
        if course is None:
            course = self.courses[patient_id] = PatientCourse(
                PatientState(patient_id=patient_id), self.pack, self.tuning, deadline=self.deadline
            )
        effects = course.take(event)
        self._queue(course)
        if effects:
            yield patient_id, effects

    def finish(self) -> Iterator[tuple[str, Effects]]:
        """Advance every course to ``until`` (default: the latest event time)."""
        end = self.until if self.until is not None else self.clock
        if end is not None:
            yield from self._wake(end)

    def _wake(self, now: datetime) -> Iterator[tuple[str, Effects]]:
        while self._wakeups and self._wakeups[0][0] <= now:
            due, _, patient_id = heapq.heappop(self._wakeups)
            if self._queued.get(patient_id) != due:
                continue  # superseded by a later entry for the patient
            del self._queued[patient_id]
            course = self.courses[patient_id]
            effects = course.advance(now)
            self._queue(course)
            if effects:
                yield patient_id, effects

    def _queue(self, course: PatientCourse) -> None:
        due = course.next_due()
        patient_id = course.patient_id
        if due is not None and self._queued.get(patient_id) != due:
            self._queued[patient_id] = due
            heapq.heappush(self._wakeups, (due, next(self._tie), patient_id))


def findings_over(
    events: Iterable[InboundEvent | Tick],
    pack: RulePack,
    tuning: Tuning | None = None,
    *,
    until: datetime | None = None,
    states: dict[str, PatientState] | None = None,
) -> Iterator[Found]:
    """Every finding the rules make over ``events``, with its cause, in the order they are made.
    Pass a dict as ``states`` to keep the patients' final states."""
    replay = StreamReplay(pack, tuning, until=until)
    for event in events:
        for _, effects in replay.feed(event):
            yield from effects.findings
    for _, effects in replay.finish():
        yield from effects.findings
    if states is not None:
        states.update({pid: course.state for pid, course in replay.courses.items()})


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
    tuning: Tuning | None = None,
    *,
    until: datetime | None = None,
    on_event: Callable[[InboundEvent], None] | None = None,
) -> BacktestResult:
    """Courses over ``events`` (in the order given, ideally by time); checks and escalations fall
    due up to ``until`` (default: the latest event's time). A :class:`Tick` only moves the clock."""
    result = BacktestResult(pack_version=pack.version)
    replay = StreamReplay(pack, tuning, until=until)
    spans: dict[str, tuple[datetime, datetime]] = {}
    changes = result.changes

    def count(moves: Iterator[tuple[str, Effects]]) -> None:
        for _, effects in moves:
            for change in effects.changes:
                changes[change.kind] += 1

    for event in events:
        if not isinstance(event, Tick):
            result.events += 1
            at = event.time
            span = spans.get(event.subject)
            if span is None:
                spans[event.subject] = (at, at)
            elif at < span[0] or at > span[1]:
                spans[event.subject] = (min(span[0], at), max(span[1], at))
            if on_event is not None:
                on_event(event)
        count(replay.feed(event))
    count(replay.finish())

    courses = replay.courses
    result.patients = len(courses)
    result.alerts = dict(
        sorted((a.dedup_key, a) for course in courses.values() for a in course.alerts.alerts.values())
    )
    result.observed = sum(
        (
            max(last - first, SHORTEST_OBSERVATION)
            for pid, (first, last) in spans.items()
            if courses[pid].state.enrollment is not None
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


__all__ = ["BacktestResult", "Found", "StreamReplay", "Tick", "findings_over", "merged", "run_backtest"]

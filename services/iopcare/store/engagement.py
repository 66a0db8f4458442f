"""The processor's transactions: a batch of events, a sweep. Each loads the patients' courses, lets them
decide, and writes what they returned through the repositories (``events.py``: event log, dead
letters, stream progress; ``patients.py``: state and the read model; ``checks.py``; ``consent.py``;
``alerts.py``), in one transaction.

The exactly-once *effect* lives here. For a batch of records from one Kafka poll:

1. insert the valid events into ``event_log`` (``ON CONFLICT DO NOTHING RETURNING``): the rows that
   come back are the events never seen before; a redelivered or duplicated event comes back as
   nothing and is applied as nothing;
2. lock the state rows of the patients concerned (in patient-id order, so two workers overlapping
   during a rebalance cannot deadlock), load each patient's course (state, pending checks, live
   alerts; ``domain/course.py``) and let it take the new events in arrival order. The course decides
   everything; this module only loads and writes;
3. write back set-based (one statement per table for the batch) what the courses returned: the
   states that changed and the case summaries of the patients something happened to, held and
   released reports, absence checks scheduled, cancelled and fired, the alert lifecycle's changes
   (alerts, transitions and alert events in the outbox), dead letters.

The caller commits Kafka offsets only after this transaction commits.

The sweep (:meth:`EngagementStore.sweep`) advances the courses with something due (absence checks,
escalations, ended snoozes) under the same patient row locks (``SKIP LOCKED``: it never waits for a
batch), and writes their effects in the same transaction. Lock order is always patient_state first,
then the patient's other rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import asyncpg

from iopcare.contract import AlertEvent, ConsentGranted, InboundEvent
from iopcare.domain.alerts import Change, Deadline
from iopcare.domain.course import Effects, PatientCourse, deadlines_of
from iopcare.domain.engagement import PatientState, Tuning
from iopcare.domain.intake import Held
from iopcare.domain.rules import RulePack
from iopcare.rulepacks import DEFAULT_PACK
from iopcare.store.alerts import CareTeam, load_alerts, record_changes
from iopcare.store.checks import load_checks, write_checks
from iopcare.store.consent import hold, load_held, release
from iopcare.store.events import (
    AcceptedEvent,
    RejectedRecord,
    advance_progress,
    insert_dead_letters,
    insert_events,
    stream_clock,
)
from iopcare.store.patients import (
    StateCache,
    load_states,
    lock_patient_states,
    parse_state,
    write_states,
    write_summaries,
)

Clock = Literal["wall", "stream"]
"""The lifecycle's "now": the wall clock (live), or event time (replayed history; see sweeper)."""

# A pooled connection or a plain one: repository methods accept either.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


@dataclass
class BatchOutcome:
    """What one batch transaction did."""

    applied: list[InboundEvent] = field(default_factory=list)  # includes released reports
    duplicates: int = 0
    late: int = 0
    dead_lettered: int = 0
    patients: int = 0
    quarantined: list[Held] = field(default_factory=list)
    released: list[Held] = field(default_factory=list)
    alert_changes: list[Change] = field(default_factory=list)
    alert_events: list[AlertEvent] = field(default_factory=list)  # what the changes published

    def merge(self, other: BatchOutcome) -> None:
        """Add another transaction's outcome (a batch split to isolate a bad event)."""
        self.applied.extend(other.applied)
        self.duplicates += other.duplicates
        self.late += other.late
        self.dead_lettered += other.dead_lettered
        self.patients += other.patients
        self.quarantined.extend(other.quarantined)
        self.released.extend(other.released)
        self.alert_changes.extend(other.alert_changes)
        self.alert_events.extend(other.alert_events)


@dataclass
class SweepOutcome:
    """What one sweep transaction did."""

    fired: list[tuple[str, bool]] = field(default_factory=list)  # (check kind, signalled) per check
    alert_changes: list[Change] = field(default_factory=list)
    alert_events: list[AlertEvent] = field(default_factory=list)  # what the changes published
    patients: int = 0  # patients advanced
    skipped_busy: int = 0  # patients locked by a batch in flight: their checks wait for the next sweep
    failed: list[Exception] = field(default_factory=list)  # advancing a patient raised (set aside)


def _team(state: PatientState, intake_supervisor: str | None = None) -> CareTeam:
    """Who the patient's alerts go to: their care team, else (no counselor yet) the clinic's intake
    supervisor's queue."""
    team = state.care_team
    if team is None:
        return CareTeam(None, intake_supervisor)
    return CareTeam(*team)


class EngagementStore:
    """The processor's Postgres side: batches, sweeps and escalations, each one transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        pack: RulePack = DEFAULT_PACK,
        *,
        clock: Clock = "wall",
        tuning: Tuning | None = None,
        state_cache_size: int = 1000,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        partitions: int | None = None,
        deadline: Deadline | None = None,
        set_aside_seconds: float = 300.0,
        intake_supervisor_id: str | None = None,
    ) -> None:
        self._pool = pool
        self._intake_supervisor = intake_supervisor_id
        self._set_aside_seconds = set_aside_seconds
        self._set_aside: dict[str, float] = {}  # patient -> monotonic time to try advancing again
        self._partitions = partitions
        self._pack = pack
        self._clock = clock
        self._tuning = pack.tuning if tuning is None else tuning
        self._cache = StateCache(state_cache_size)
        self._wall_clock = wall_clock
        self.deadline: Deadline = deadlines_of(pack) if deadline is None else deadline

    async def commit_batch(
        self, accepted: Sequence[AcceptedEvent], rejected: Sequence[RejectedRecord]
    ) -> BatchOutcome:
        """Apply a batch in one transaction; see the module docstring."""
        outcome = BatchOutcome()
        # One row per idempotency key, in key order so concurrent batches lock in the same order.
        unique: dict[tuple[str, str], AcceptedEvent] = {}
        for item in accepted:
            unique.setdefault((item.event.source, item.event.id), item)
        outcome.duplicates = len(accepted) - len(unique)
        ordered = [unique[key] for key in sorted(unique)]

        written: dict[str, tuple[str, PatientState]] = {}
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                inserted = await insert_events(connection, ordered)
                outcome.duplicates += len(ordered) - len(inserted)
                # `unique` holds each key's first occurrence, in arrival order.
                fresh = [item.event for key, item in unique.items() if key in inserted]
                if fresh:
                    written = await self._take_in(connection, fresh, outcome)
                if accepted:
                    await advance_progress(connection, accepted)
                if rejected:
                    outcome.dead_lettered = await insert_dead_letters(connection, rejected)
        except BaseException:
            # The fold changed cached states in place, and this transaction did not commit.
            self._cache.forget({item.event.subject for item in accepted})
            raise
        for patient_id, (version, state) in written.items():
            self._cache.put(patient_id, version, state)
        return outcome

    async def _take_in(
        self, connection: Connection, fresh: list[InboundEvent], outcome: BatchOutcome
    ) -> dict[str, tuple[str, PatientState]]:
        patient_ids = sorted({event.subject for event in fresh})
        states = await lock_patient_states(connection, patient_ids, cache=self._cache)
        # Held reports matter only to a course taking a consent grant; load them just then.
        granting = sorted({e.subject for e in fresh if isinstance(e, ConsentGranted)})
        courses = await self._courses(connection, states, granting)
        wall = self._wall_clock() if self._clock == "wall" else None
        effects = {pid: Effects() for pid in patient_ids}
        for event in fresh:  # arrival (offset) order: a patient's events are in their partition's order
            effects[event.subject].extend(courses[event.subject].take(event, wall))
        changed = [courses[pid].state for pid in patient_ids if effects[pid].state_changed]
        versions = (
            await write_states(connection, changed, unassigned_supervisor=self._intake_supervisor)
            if changed
            else {}
        )
        outcome.patients = len(patient_ids)
        traces = {event.id: event.traceparent for event in fresh if event.traceparent is not None}
        await self._write_effects(connection, courses, effects, outcome, as_of=wall, traces=traces)
        # Only rewritten rows have a new version; the others' cached copies stay valid as they are.
        return {pid: (versions[pid], courses[pid].state) for pid in versions}

    async def _courses(
        self, connection: Connection, states: dict[str, PatientState], with_held: Sequence[str] = ()
    ) -> dict[str, PatientCourse]:
        """The patients' courses as stored (their rows locked by the caller): state, pending and
        fired checks, live alerts and the keys of resolved ones, held reports of ``with_held``."""
        patient_ids = sorted(states)
        checks = await load_checks(connection, patient_ids)
        alerts = await load_alerts(connection, patient_ids, closed_keys=True)
        held = await load_held(connection, list(with_held)) if with_held else {}
        return {
            pid: PatientCourse(
                states[pid],
                self._pack,
                self._tuning,
                deadline=self.deadline,
                alerts=alerts[pid],
                held=held.get(pid, ()),
                pending=checks.get(pid, ((), ()))[0],
                fired=checks.get(pid, ((), ()))[1],
            )
            for pid in patient_ids
        }

    async def _write_effects(
        self,
        connection: Connection,
        courses: dict[str, PatientCourse],
        effects: dict[str, Effects],
        outcome: BatchOutcome | SweepOutcome,
        teams: dict[str, CareTeam] | None = None,
        as_of: datetime | None = None,
        traces: dict[str, str] | None = None,
    ) -> None:
        """Make the courses' effects durable, one statement per table (the states are written apart),
        and the case summaries of the patients something happened to, judged at ``as_of`` (default:
        each patient's latest event). ``teams``: the care teams as stored, where the caller read
        them (else from the states); ``traces``: the inbound events' traceparents by event id."""
        summaries = [courses[pid].summary(as_of) for pid, e in effects.items() if e]
        if summaries:
            await write_summaries(connection, summaries)
        held = [h for e in effects.values() for h in e.held]
        released = [r for e in effects.values() for r in e.released]
        # Holds first: a report held and released within this batch gets both rows written.
        if held:
            await hold(connection, held)
        if released:
            await release(connection, [h for h, _ in released], [by for _, by in released])
        await write_checks(
            connection,
            [(pid, c) for pid, e in effects.items() for c in e.scheduled],
            [(pid, c) for pid, e in effects.items() for c in e.cancelled],
            [(pid, c, signalled) for pid, e in effects.items() for c, signalled in e.fired],
        )
        changes = [c for e in effects.values() for c in e.changes]
        if changes:
            touched = sorted({c.alert.patient_id for c in changes})
            teams = {
                pid: (teams or {}).get(pid) or _team(courses[pid].state, self._intake_supervisor)
                for pid in touched
            }
            risks = {pid: courses[pid].risk_score() for pid in touched}
            outcome.alert_events = await record_changes(connection, changes, teams, risks, traces)
        outcome.alert_changes = changes
        if isinstance(outcome, BatchOutcome):
            for e in effects.values():
                outcome.applied.extend(e.applied)
                outcome.late += e.late
            outcome.quarantined = held
            outcome.released = [h for h, _ in released]
        else:
            outcome.fired = [(c.kind, signalled) for e in effects.values() for c, signalled in e.fired]

    def use_partitions(self, partitions: int) -> None:
        """The events topic's partition count as the broker now reports it (partitions can be
        added while the worker runs): the stream clock waits for each of them."""
        self._partitions = partitions

    async def stream_clock(self) -> datetime | None:
        """The event-time watermark: the least, over partitions, of the latest event time committed.
        "Now" for sweeps over replayed history (None before any event).

        With ``partitions`` (the topic's partition count) the clock starts only once every partition
        has committed an event. A partition with nothing committed yet (its worker still starting, its
        records not yet fetched) must hold the clock back like a lagging one: were it left out, the
        other partitions' progress would make its patients look silent and fire their checks before
        their check-ins are read (found by the reliability suite's crash scenario).
        """
        async with self._pool.acquire() as connection:
            return await stream_clock(connection, self._partitions or 0)

    async def sweep(self, now: datetime, limit: int = 200) -> SweepOutcome:
        """Advance the courses that have something due by ``now`` (absence checks, escalations,
        ended snoozes), for up to ``limit`` patients, in one transaction.

        Patients whose row a batch holds are skipped (``SKIP LOCKED``) and swept next time, so the
        sweep never slows the stream and two workers sweeping at once never fire a check twice.

        A patient whose course raises while advancing (a defect in a rule) is left as stored, counted
        in ``failed`` and set aside for ``set_aside_seconds`` (then tried again, so a fixed rule pack
        catches up on its own): the other patients' checks and escalations go on.
        """
        outcome = SweepOutcome()
        clock = time.monotonic()
        self._set_aside = {pid: at for pid, at in self._set_aside.items() if at > clock}
        async with self._pool.acquire() as connection, connection.transaction():
            due = await connection.fetch(
                """
                SELECT DISTINCT patient_id FROM (
                    (SELECT patient_id FROM absence_checks
                     WHERE fired_at IS NULL AND due_at <= $1 AND patient_id <> ALL($3::text[])
                     ORDER BY due_at LIMIT $2)
                    UNION ALL
                    (SELECT patient_id FROM alerts WHERE state = 'open' AND escalate_at <= $1
                     AND patient_id <> ALL($3::text[]) LIMIT $2)
                    UNION ALL
                    (SELECT patient_id FROM alerts WHERE state = 'snoozed' AND snoozed_until <= $1
                     AND patient_id <> ALL($3::text[]) LIMIT $2)
                ) AS d LIMIT $2
                """,
                now,
                limit,
                sorted(self._set_aside),
            )
            if not due:
                return outcome
            rows = await connection.fetch(
                "SELECT patient_id, state::text AS state, state_version, counselor_id, supervisor_id "
                "FROM patient_state WHERE patient_id = ANY($1::text[]) "
                "ORDER BY patient_id FOR UPDATE SKIP LOCKED",
                [row["patient_id"] for row in due],
            )
            outcome.skipped_busy = len(due) - len(rows)
            states = {
                r["patient_id"]: parse_state(r["patient_id"], r["state"], r["state_version"]) for r in rows
            }
            teams = {row["patient_id"]: CareTeam(row["counselor_id"], row["supervisor_id"]) for row in rows}
            courses = await self._courses(connection, states)
            effects: dict[str, Effects] = {}
            for pid, course in courses.items():
                try:
                    effects[pid] = course.advance(now)
                except Exception as exc:
                    outcome.failed.append(exc)
                    self._set_aside[pid] = clock + self._set_aside_seconds
            courses = {pid: course for pid, course in courses.items() if pid in effects}
            outcome.patients = len(courses)
            await self._write_effects(connection, courses, effects, outcome, teams, as_of=now)
        return outcome

    async def load_states(self, patient_ids: Sequence[str] | None = None) -> dict[str, PatientState]:
        """Current states (all, or the given patients), for tests and replays' comparisons."""
        async with self._pool.acquire() as connection:
            return await load_states(connection, patient_ids)


__all__ = ["BatchOutcome", "Clock", "EngagementStore", "SweepOutcome"]

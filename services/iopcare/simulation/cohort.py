"""Synthetic cohorts: realistic, deterministic event streams of an IOP for demos, tests and benchmarks.

A cohort is a set of fictional patients who all enrol on day 0 of a ~90-day intensive outpatient
program at ASAM level 2.1 (4 groups, 1 individual session, 9 hours and 2 fellowship meetings a
week). Each patient follows one *archetype*, the kind of course the default rule pack is meant to
notice:

- ``steady``: attends ~95 %, low craving, no use, negative screens; never a safety signal.
- ``improving``: a shaky first month, then meets the plan every week with craving <= 3, so that by
  the end they are step-down eligible (>= 4 compliant weeks, no use, negative screens).
- ``disengaging``: attendance falls from ~90 % to ~30 % from week 3, check-ins thin out with silent
  gaps of 3+ days, family therapy is cancelled or missed; some leave against advice.
- ``relapsing``: fine for 3-5 weeks, then craving rises by >= 3 over consecutive check-ins, use is
  reported, screens turn positive, two sessions in a row are missed, the house (if any) reports a
  positive test; about half are stepped up to level 2.5.
- ``crisis``: at some point a check-in with a safety concern, PHQ-9 item 9 > 0 and/or a positive
  C-SSRS screener, followed by a safety-planning session.

The generator is deterministic: everything (patient ids, event ids, times, values) derives from
``seed`` through ``random.Random``, never from the clock or ``uuid4``, so the same arguments give
byte-identical ``encode_event`` output. Each patient's course comes from a seed of its own, drawn
from the cohort seed, so changing one patient's story does not reshuffle everyone else's.

Event ``time`` is when the fact happened (attendance shortly after the session, a lab result when
it was resulted), and every event passes the contract's validation as it is built.
"""

from __future__ import annotations

import heapq
import io
import os
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, date, datetime
from operator import attrgetter
from pathlib import Path
from typing import IO, Any, cast

from iopcare.contract import (
    CloudEvent,
    encode_event,
)
from iopcare.evaluation.outcomes import PatientOutcome
from iopcare.simulation.program import PROGRAM_DAYS
from iopcare.simulation.roster import cohort_roster
from iopcare.simulation.timeline import _Timeline

# --- public API -----------------------------------------------------------------------------


def _day_zero(start: date | datetime) -> tuple[datetime, datetime | None]:
    """Midnight of the first program day (in the start's time zone, UTC if none) and the exact start."""
    if isinstance(start, datetime):
        exact = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
        return exact.replace(hour=0, minute=0, second=0, microsecond=0), exact
    return datetime(start.year, start.month, start.day, tzinfo=UTC), None


def iter_cohort(
    patients: int,
    *,
    seed: int,
    start: date | datetime,
    days: int = PROGRAM_DAYS,
    archetype_mix: Mapping[str, float] | None = None,
) -> Iterator[CloudEvent[Any]]:
    """Yield the cohort's events in event-time order (the same events as ``generate_cohort``).

    Each patient's timeline is built and validated in turn, then the per-patient streams are merged
    by time; ties go to the patient listed first in ``cohort_roster``, so the order is deterministic.
    """
    streams = [timeline.events() for timeline in _timelines(patients, seed, start, days, archetype_mix)]
    yield from heapq.merge(*streams, key=attrgetter("time"))


def _timelines(
    patients: int, seed: int, start: date | datetime, days: int, archetype_mix: Mapping[str, float] | None
) -> list[_Timeline]:
    """Each patient's timeline (course drawn, events not yet built), in roster order."""
    if days < 1:
        raise ValueError("days must be >= 1")
    day0, start_at = _day_zero(start)
    roster = cohort_roster(patients, seed=seed, archetype_mix=archetype_mix)
    return [_Timeline(patient, day0, start_at, days) for patient in roster]


def generate_cohort(
    patients: int,
    *,
    seed: int,
    start: date | datetime,
    days: int = PROGRAM_DAYS,
    archetype_mix: Mapping[str, float] | None = None,
) -> list[CloudEvent[Any]]:
    """Generate a synthetic cohort of ``patients`` over ``days`` from ``start``, sorted by event time.

    ``start`` is the first program day: a date (midnight UTC) or a datetime (its time zone; naive
    means UTC; enrolments happen shortly after it). ``archetype_mix`` weighs the archetypes in
    ``ARCHETYPES`` (default ``DEFAULT_ARCHETYPE_MIX``; missing ones get none). Deterministic: the
    same arguments give the same events, byte for byte under ``encode_event``, ids included.
    A 200-patient, 90-day cohort is about 50,000 events.
    """
    return list(iter_cohort(patients, seed=seed, start=start, days=days, archetype_mix=archetype_mix))


def cohort_outcomes(
    patients: int,
    *,
    seed: int,
    start: date | datetime,
    days: int = PROGRAM_DAYS,
    archetype_mix: Mapping[str, float] | None = None,
) -> list[PatientOutcome]:
    """What happened to each patient of the cohort ``iter_cohort`` builds with the same arguments:
    lapse episodes, dropout and crises, drawn from the latent process (latent.py), in roster order.
    The ground truth ``iopcare evaluate`` scores a rule pack against; never on the event topic."""
    return [timeline.outcome() for timeline in _timelines(patients, seed, start, days, archetype_mix)]


def write_ndjson(
    events: Iterable[CloudEvent[Any]], destination: str | os.PathLike[str] | IO[bytes] | IO[str]
) -> int:
    """Write events as newline-delimited JSON (one ``encode_event`` per line); return how many.

    ``destination`` is a path (created or truncated) or an open stream, binary or text.
    """
    if isinstance(destination, str | os.PathLike):
        with Path(destination).open("wb") as stream:
            return _write_lines(events, stream)
    if isinstance(destination, io.TextIOBase):
        count = 0
        for event in events:
            destination.write(encode_event(event).decode("utf-8") + "\n")
            count += 1
        return count
    return _write_lines(events, cast(IO[bytes], destination))


def _write_lines(events: Iterable[CloudEvent[Any]], stream: IO[bytes]) -> int:
    count = 0
    for event in events:
        stream.write(encode_event(event) + b"\n")
        count += 1
    return count

"""The events the benchmark sends: synthetic cohorts, encoded once, published with the project's SDK."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

from iopcare.contract import encode_event
from iopcare.publish import EventPublisher
from iopcare.simulation import generate_cohort

EVENTS_PER_PATIENT_90_DAYS = 250  # a 90-day course is ~256 events (iopcare.simulation)


@dataclass(frozen=True)
class Workload:
    """Encoded events in event-time order, with their idempotency keys."""

    payloads: list[bytes]
    keys: list[tuple[str, str]]  # (source, id) per payload
    patients: int

    def __len__(self) -> int:
        return len(self.payloads)


def _start() -> date:
    # In the recent past: the worker dead-letters events more than a day in the future.
    return date.today() - timedelta(days=91)


def cohort_workload(
    patients: int, *, days: int = 90, seed: int = 1, limit: int | None = None, start: date | None = None
) -> Workload:
    """The first ``limit`` events (by event time) of a synthetic cohort starting on ``start``
    (default: 91 days ago, so that a 90-day course has happened by now)."""
    events = generate_cohort(patients, seed=seed, start=start or _start(), days=days)[:limit]
    return Workload(
        payloads=[encode_event(e) for e in events],
        keys=[(e.source, e.id) for e in events],
        patients=len({e.subject for e in events}),
    )


def events_workload(count: int, *, seed: int = 1) -> Workload:
    """About ``count`` events of 90-day courses (enough patients to have them, then cut to ``count``)."""
    patients = max(1, math.ceil(count / EVENTS_PER_PATIENT_90_DAYS))
    workload = cohort_workload(patients, seed=seed, limit=count)
    while len(workload) < count:  # a cohort a little short of the estimate: add a patient
        patients += 1
        workload = cohort_workload(patients, seed=seed, limit=count)
    return workload


def recent_day_workload(patients: int, *, seed: int = 3) -> Workload:
    """Yesterday's events of ``patients`` newly enrolled patients: every patient gets a state, and no
    absence check is long overdue (as with a live clinic, unlike a replay of months of history)."""
    return cohort_workload(patients, days=1, seed=seed, start=date.today() - timedelta(days=1))


def warm_up_workload() -> Workload:
    """A handful of events of one patient no other workload has (another seed): proves a worker ready."""
    return cohort_workload(1, days=1, seed=990_001, limit=5)


def publish(bootstrap: str, topic: str, workload: Workload) -> float:
    """Publish all events (acks=all, pipelined); returns events per second."""
    started = time.perf_counter()
    with EventPublisher(bootstrap, topic) as publisher:
        report = publisher.publish_all(enumerate(workload.payloads, start=1))
    if not report.ok or report.sent != len(workload):
        raise RuntimeError(f"publishing failed: {report.sent} sent, {report.invalid[:3]} {report.failed[:3]}")
    return len(workload) / (time.perf_counter() - started)


def paced(
    workload: Workload, rate: float, record: Callable[[int, float], None]
) -> Iterator[tuple[int, bytes]]:
    """Numbered events at a steady ``rate`` per second, calling ``record(index, wall time)`` as each
    one is handed to the publisher. Late by a GC pause or a busy core, it catches up at once."""
    started = time.monotonic()
    for index, payload in enumerate(workload.payloads):
        due = started + index / rate
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        record(index, time.time())
        yield index + 1, payload

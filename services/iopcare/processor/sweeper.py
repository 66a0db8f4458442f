"""The sweep loop: every few seconds, advance the patients' courses that have something due: absence
checks that fell due, alerts nobody acknowledged in time, snoozes that ended (one driver over
:meth:`iopcare.domain.course.PatientCourse.advance`; it decides nothing itself).

Every worker runs one; they need no coordination because the store takes each patient's due work
under that patient's row lock (``SKIP LOCKED``) and marks it done in the transaction that writes its
consequences. "Now" is the wall clock in production. Over replayed history (the demo, a backfill) it is
the *stream clock*, the latest event time committed, so "48 h without a check-in" means 48 h of
program time, not 48 h since the replay began.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from iopcare.processor import metrics
from iopcare.processor.pipeline import TRANSIENT_STORE_ERRORS, failure_detail, log_alert_events
from iopcare.store.engagement import Clock, EngagementStore, SweepOutcome
from iopcare.tracing import new_trace, tracing

log = logging.getLogger(__name__)


class Sweeper:
    """Runs sweeps until nothing due is left; never raises (a failed sweep is retried next tick)."""

    def __init__(
        self,
        store: EngagementStore,
        clock: Clock = "wall",
        *,
        patients_per_sweep: int = 200,
        max_sweeps_per_tick: int = 50,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._clock = clock
        self._limit = patients_per_sweep
        self._max_sweeps = max_sweeps_per_tick
        self._wall_clock = wall_clock

    async def now(self) -> datetime | None:
        """The time checks are due against; None when the stream clock has not started."""
        wall = self._wall_clock()
        if self._clock == "wall":
            return wall
        stream = await self._store.stream_clock()
        return None if stream is None else min(stream, wall)

    async def tick(self) -> int:
        """Sweep until a sweep changes nothing (or the per-tick cap); returns the checks fired. Keeps
        nothing of one sweep while running the next: after downtime a backlog can be large."""
        fired = 0
        try:
            now = await self.now()
            if now is None:
                return fired
            for _ in range(self._max_sweeps):
                started = time.perf_counter()
                with tracing(new_trace()):  # what a sweep finds starts a trace of its own
                    outcome = await self._store.sweep(now, self._limit)
                metrics.SWEEP_SECONDS.observe(time.perf_counter() - started)
                metrics.SWEEP_RUNS.labels("ok").inc()
                self._observe(outcome)
                fired += len(outcome.fired)
                if not outcome.fired and not outcome.alert_changes:
                    break
        except TRANSIENT_STORE_ERRORS as exc:
            metrics.SWEEP_RUNS.labels("failed").inc()
            log.warning("absence sweep: Postgres unavailable (%s); retrying next tick", type(exc).__name__)
        except Exception as exc:  # a sweep must never take the worker down; the next tick retries
            metrics.SWEEP_RUNS.labels("failed").inc()
            log.exception("absence sweep failed (%s); retrying next tick", type(exc).__name__)
        return fired

    @staticmethod
    def _observe(outcome: SweepOutcome) -> None:
        for exc in outcome.failed:
            metrics.SWEEP_PATIENT_FAILURES.inc()
            log.error("sweep: advancing a patient raised %s; set aside for now", failure_detail(exc))
        for kind, signalled in outcome.fired:
            metrics.SWEEP_CHECKS.labels(kind, "true" if signalled else "false").inc()
        for change in outcome.alert_changes:
            metrics.ALERT_CHANGES.labels(change.kind, change.alert.severity).inc()
        log_alert_events(outcome.alert_events)

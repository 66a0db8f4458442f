"""What the state keeps of the past: every fact from the retention horizon's day on, the last
check-in, the program's first sessions; whatever the arrival order, late events included.

The prune finds the old head of each time-ordered list by bisection instead of walking it, so these
tests hold it to the definition: the state after pruning as it goes equals the state folded without
pruning and then cut at the final horizon.
"""

from __future__ import annotations

import copy
import random
from datetime import UTC, date, datetime, timedelta

import pytest

from iopcare.domain.engagement import DEFAULT_TUNING, EARLY_SESSIONS_KEPT, PatientState, Tuning
from iopcare.domain.intake import replay
from iopcare.simulation import generate_cohort

COHORT = generate_cohort(6, seed=5, start=date(2026, 1, 5), days=120)
KEEP_ALL = Tuning(lateness=DEFAULT_TUNING.lateness, retention=timedelta(days=3650))


def _cut(full: PatientState, tuning: Tuning) -> PatientState:
    """The definition, applied once to a state that kept everything."""
    assert full.high_water is not None
    horizon_day = (full.high_water - tuning.retention).date()
    horizon = datetime(horizon_day.year, horizon_day.month, horizon_day.day, tzinfo=UTC)
    kept = copy.deepcopy(full)
    kept.checkins = [c for c in full.checkins[:-1] if c.at >= horizon] + full.checkins[-1:]
    kept.use_signals = [u for u in full.use_signals if u.at >= horizon]
    kept.house_incidents = [h for h in full.house_incidents if h.at >= horizon]
    kept.fellowship = [m for m in full.fellowship if m.attended_on >= horizon_day]
    by_start = sorted(full.sessions.values(), key=lambda s: (s.starts_at, s.session_id))
    first = [s for s in by_start if s.starts_at < horizon][:EARLY_SESSIONS_KEPT]
    kept.sessions = {s.session_id: s for s in first + [s for s in by_start if s.starts_at >= horizon]}
    kept.family_bookings = {
        b.booking_id: b for b in full.family_bookings.values() if b.starts_at >= horizon - tuning.retention
    }
    return kept


def _delivered(rng: random.Random, share: float, most_days: int) -> list:
    """The cohort with a share of its events delivered up to ``most_days`` late."""
    keyed = [
        (e.time + (timedelta(days=rng.uniform(0, most_days)) if rng.random() < share else timedelta(0)), i, e)
        for i, e in enumerate(COHORT)
    ]
    return [e for _, _, e in sorted(keyed)]


@pytest.mark.parametrize(
    ("seed", "share", "most_days"),
    [(0, 0.0, 0), (1, 0.05, 5), (2, 0.1, 20), (3, 0.05, 60)],
    ids=["in order", "a few within the lateness window", "late", "later than the horizon"],
)
def test_pruning_as_events_arrive_keeps_exactly_what_the_horizon_says(
    seed: int, share: float, most_days: int
) -> None:
    events = _delivered(random.Random(seed), share, most_days)
    pruned = replay(events)
    full = replay(events, KEEP_ALL)
    assert pruned.keys() == full.keys()
    for patient_id, state in pruned.items():
        assert state == _cut(full[patient_id], DEFAULT_TUNING), patient_id
    # Not vacuous: the cohort outlives the retention window, so there was something to drop.
    assert sum(len(s.checkins) for s in full.values()) > sum(len(s.checkins) for s in pruned.values())
    assert sum(len(s.sessions) for s in full.values()) > sum(len(s.sessions) for s in pruned.values())

"""The pure engagement state: order-insensitive within the lateness window, measures by event time."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from iopcare.contract import SessionAttended, SessionMissed, SessionScheduled, new_event
from iopcare.domain.engagement import PatientState, apply_event
from iopcare.domain.intake import replay
from iopcare.domain.measures import consecutive_unexcused_misses
from iopcare.simulation import generate_cohort

COHORT = generate_cohort(6, seed=11, start=date(2026, 1, 5))


def _states(events: list) -> dict[str, PatientState]:
    return replay(events)


def _shuffle_within(events: list, window: timedelta, rng: random.Random) -> list:
    """Reorder events, each displaced by less than ``window`` of event time."""
    keyed = [
        (e.time + timedelta(seconds=rng.uniform(0, window.total_seconds())), i, e)
        for i, e in enumerate(events)
    ]
    return [e for _, _, e in sorted(keyed)]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_any_arrival_order_within_the_lateness_window_gives_the_same_state(seed: int) -> None:
    shuffled = _shuffle_within(COHORT, timedelta(days=6), random.Random(seed))
    assert shuffled != COHORT
    assert _states(shuffled) == _states(COHORT)


def test_events_later_than_the_window_are_counted_late_and_still_applied() -> None:
    patient = COHORT[0].subject
    own = [e for e in COHORT if e.subject == patient]
    delayed = own[5]  # an early event, delivered after everything else
    state = replay([e for e in own if e is not delayed] + [delayed])[patient]
    assert state.late_events == 1
    in_order = replay(own)[patient]
    assert in_order.late_events == 0
    assert state.sessions == in_order.sessions and state.checkins == in_order.checkins


def _session(cls, session_id: str, starts_at: datetime, at: datetime, **extra):
    data = {
        "session_id": session_id,
        "kind": "group",
        "starts_at": starts_at,
        "duration_minutes": 180,
        **extra,
    }
    return new_event(
        cls, subject="p-0000000001", source="ehr.test", data=data, time=at, id=f"{cls.__name__}-{session_id}"
    )


def test_a_backfilled_attendance_breaks_the_run_of_misses_where_it_belongs_in_time() -> None:
    monday = datetime(2026, 3, 2, 18, tzinfo=UTC)
    starts = [monday + timedelta(days=d) for d in (0, 1, 3)]
    missed_first = _session(SessionMissed, "ses-1", starts[0], starts[0] + timedelta(hours=4))
    missed_third = _session(SessionMissed, "ses-3", starts[2], starts[2] + timedelta(hours=4))
    attended_second_backfilled = _session(SessionAttended, "ses-2", starts[1], starts[2] + timedelta(days=1))
    state = PatientState(patient_id="p-0000000001")
    for event in (missed_first, missed_third):
        apply_event(state, event)
    assert [s.session_id for s in consecutive_unexcused_misses(state)] == ["ses-1", "ses-3"]
    apply_event(state, attended_second_backfilled)
    assert [s.session_id for s in consecutive_unexcused_misses(state)] == ["ses-3"]


def test_a_schedule_arriving_after_the_outcome_does_not_undo_it() -> None:
    starts = datetime(2026, 3, 2, 18, tzinfo=UTC)
    attended = _session(SessionAttended, "ses-1", starts, starts + timedelta(hours=4))
    scheduled = _session(SessionScheduled, "ses-1", starts, starts - timedelta(days=3))
    state = replay([attended, scheduled])["p-0000000001"]
    assert state.sessions["ses-1"].status == "attended"

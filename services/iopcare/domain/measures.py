"""Engagement measures computed from a patient's facts *by event time*. Pure.

These are the quantities counselors talk about ("2 misses in a row", "3 groups this week") and that
the rules compare against thresholds. They are computed on demand from the facts in
:class:`~iopcare.domain.engagement.PatientState`, so late and out-of-order events are counted where
they belong in time, not where they arrived.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from iopcare.domain.engagement import CheckInRecord, PatientState, SessionRecord, UseSignal


@dataclass(frozen=True)
class ProgramCalendar:
    """Program weeks in the clinic's time zone: week 1 starts on the program start date."""

    zone: tzinfo = UTC

    def local_date(self, when: datetime) -> date:
        return when.astimezone(self.zone).date()

    def week_number(self, program_start: date, when: datetime) -> int:
        """1-based program week of ``when`` (0 or less: before the program started)."""
        return (self.local_date(when) - program_start).days // 7 + 1

    def week_bounds(self, program_start: date, week: int) -> tuple[datetime, datetime]:
        """[start, end) of a program week as aware datetimes."""
        first = program_start + timedelta(days=7 * (week - 1))
        start = datetime.combine(first, time.min, tzinfo=self.zone)
        return start, start + timedelta(days=7)


@dataclass(frozen=True)
class WeekAttendance:
    """What a patient did in one program week, against the plan."""

    week: int
    group_sessions: int
    individual_sessions: int
    family_sessions: int
    hours: float
    missed_unexcused: int
    missed_excused: int
    fellowship_meetings: int


def sessions_by_time(state: PatientState) -> list[SessionRecord]:
    """Sessions in start order (ties by id, so the order is total)."""
    return sorted(state.sessions.values(), key=lambda s: (s.starts_at, s.session_id))


def week_attendance(state: PatientState, week: int, calendar: ProgramCalendar) -> WeekAttendance:
    """Attendance in a program week by session start time (needs an enrollment)."""
    if state.enrollment is None:
        raise ValueError("week attendance needs an enrollment (program start)")
    start, end = calendar.week_bounds(state.enrollment.program_start, week)
    counts = {"group": 0, "individual": 0, "family": 0}
    minutes = 0
    missed_unexcused = missed_excused = 0
    for session in state.sessions.values():
        if not start <= session.starts_at < end:
            continue
        if session.status == "attended":
            counts[session.kind] += 1
            minutes += session.duration_minutes
        elif session.status == "missed":
            if session.excused:
                missed_excused += 1
            else:
                missed_unexcused += 1
    first, last = start.date(), (end - timedelta(days=1)).date()
    fellowship = sum(1 for m in state.fellowship if first <= m.attended_on <= last)
    return WeekAttendance(
        week=week,
        group_sessions=counts["group"],
        individual_sessions=counts["individual"],
        family_sessions=counts["family"],
        hours=minutes / 60,
        missed_unexcused=missed_unexcused,
        missed_excused=missed_excused,
        fellowship_meetings=fellowship,
    )


def consecutive_unexcused_misses(state: PatientState, as_of: datetime | None = None) -> list[SessionRecord]:
    """The current run of unexcused misses, oldest first: the misses after the last attended session.
    Excused misses neither extend nor break the run; sessions without an outcome are skipped."""
    run: list[SessionRecord] = []
    for session in sessions_by_time(state):
        if as_of is not None and session.starts_at > as_of:
            break
        if session.status == "attended":
            run = []
        elif session.status == "missed" and not session.excused:
            run.append(session)
    return run


def misses_within(state: PatientState, as_of: datetime, days: int) -> list[SessionRecord]:
    """Unexcused misses of sessions that started in the ``days`` before ``as_of`` (inclusive)."""
    since = as_of - timedelta(days=days)
    return [
        s
        for s in sessions_by_time(state)
        if s.status == "missed" and not s.excused and since <= s.starts_at <= as_of
    ]


def early_sessions(state: PatientState, count: int = 5) -> list[SessionRecord]:
    """The first ``count`` sessions of the program, by start time."""
    return sessions_by_time(state)[:count]


def recent_checkins(state: PatientState, count: int) -> list[CheckInRecord]:
    """The last ``count`` check-ins by event time, oldest first."""
    return state.checkins[-count:]


def craving_rise(state: PatientState, window: int = 3) -> int | None:
    """Craving change across the last ``window`` check-ins (last minus first); None with fewer."""
    last = recent_checkins(state, window)
    if len(last) < window:
        return None
    return last[-1].craving - last[0].craving


def use_signals_within(state: PatientState, as_of: datetime, days: int) -> list[UseSignal]:
    """Use signals (reported use, positive screens, house positives) in the ``days`` before ``as_of``."""
    since = as_of - timedelta(days=days)
    return [u for u in state.use_signals if since <= u.at <= as_of]


def hours_since_last_checkin(state: PatientState, now: datetime) -> float | None:
    """Hours since the latest check-in; since enrollment if none yet; None if not enrolled."""
    reference = state.last_checkin_at or (state.enrollment.enrolled_at if state.enrollment else None)
    if reference is None:
        return None
    return (now - reference).total_seconds() / 3600

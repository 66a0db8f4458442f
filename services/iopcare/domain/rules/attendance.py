"""Attendance: misses in a row, misses often, misses early, and each program week against the plan.

Sessions are judged by their start time, so a backfilled attendance lands where it belongs. Excused
misses (agreed with the care team in advance) are not disengagement: they neither count as misses nor
break a run of misses, and (by default) they lower that week's expectation.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter

from iopcare.contract import PatientEnrolled, SessionAttended, SessionMissed
from iopcare.domain.engagement import (
    DEFAULT_TUNING,
    FellowshipMeeting,
    PatientState,
    SessionRecord,
    WeeklyPlan,
)
from iopcare.domain.rules.evidence import chain_start, clearance, signal
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.rules.wording import count, day, day_time, listing, ordinal
from iopcare.domain.signals import FactValue, Finding

MISSES_ACTION = (
    "Reach the patient within a day: ask what is getting in the way (transport, work, childcare, "
    "motivation), re-engage, and agree on the next sessions."
)
MISSED_OFTEN_ACTION = (
    "Reach the patient today and review engagement with the treatment team: barriers, motivation, and "
    "whether the current level of care still fits."
)
EARLY_ACTION = (
    "Contact the patient within a day: early absences predict dropping out. Address barriers now and "
    "confirm the schedule for the coming week."
)
SHORTFALL_ACTION = (
    "Review the week with the patient at the next session: what got in the way, and a plan to meet the "
    "schedule next week."
)
FELLOWSHIP_ACTION = (
    "Ask about outside meetings at the next session; help find meetings that fit the patient's week "
    "or a sponsor."
)


WEEK = timedelta(days=7)
DAY = timedelta(days=1)
DAY_SECONDS = 86400
KEPT_WEEKS = DEFAULT_TUNING.retention // WEEK
"""The program weeks of history the patient state keeps (6): how far back a week close can look."""
RUN_CONTINUES_WITHIN = WEEK + DAY
"""Week closes come a week apart: a short week closing within this of the run's alert's last one
continues that alert (``Signal.continues_within``), also once the run's first weeks have left the
history kept and the rule names the run after the first week it still holds."""


def _miss(session: SessionRecord) -> bool:
    return session.status == "missed" and not session.excused


_order: Callable[[SessionRecord], tuple[datetime, str]] = attrgetter("starts_at", "session_id")
"""Sessions in start order, ties by id (as :func:`~iopcare.domain.measures.sessions_by_time`)."""


def _the_miss(state: PatientState, event: SessionMissed) -> SessionRecord | None:
    """The session this event marked missed, unexcused, if the state still says so (a later
    correction, an excuse, or an attendance may have overridden it)."""
    record = state.sessions.get(event.data.session_id)
    if record is None or record.event_id != event.id or not _miss(record):
        return None
    return record


def _sessions_text(sessions: list[SessionRecord], pack: RulePack) -> tuple[str, str]:
    """(``group sessions``, ``Tue 4 Mar, Thu 6 Mar``) or, for mixed kinds, (``sessions``, ``Tue 4 Mar
    (group), Wed 5 Mar (individual)``)."""
    zone = pack.program_calendar.zone
    dates = [day(s.starts_at, zone) for s in sessions]
    if len(set(dates)) < len(dates):  # two on one day: say the times
        dates = [day_time(s.starts_at, zone) for s in sessions]
    kinds = {s.kind for s in sessions}
    if len(kinds) == 1:
        return f"{kinds.pop()} sessions", listing(dates)
    return "sessions", listing([f"{when} ({s.kind})" for when, s in zip(dates, sessions, strict=True)])


# --- missed in a row -----------------------------------------------------------------------------


def run_of_misses(
    ordered: list[SessionRecord], session_id: str
) -> tuple[list[SessionRecord], SessionRecord | None]:
    """The run of unexcused misses that contains ``session_id``, and the attended session before it:
    an attended session ends a run; excused misses and sessions without an outcome neither extend
    nor end it."""
    run: list[SessionRecord] = []
    before: SessionRecord | None = None
    found = False
    for session in ordered:
        if session.status == "attended":
            if found:
                break
            run, before = [], session
        elif _miss(session):
            run.append(session)
            found = found or session.session_id == session_id
    return (run, before) if found else ([], None)


def missed_in_a_row(state: PatientState, event: SessionMissed, pack: RulePack) -> list[Finding]:
    """``misses`` (2) unexcused missed sessions in a row. One episode per run, named after its first
    miss: the 3rd, 4th... miss of the run updates the same alert."""
    rule = pack.rules.missed_in_a_row
    record = _the_miss(state, event)
    if record is None:
        return []
    if sum(1 for s in state.sessions.values() if s.status == "missed" and not s.excused) < rule.misses:
        return []  # no run can be long enough
    ordered = sorted(state.sessions.values(), key=_order)
    run, before = run_of_misses(ordered, record.session_id)
    if len(run) < rule.misses:
        return []
    zone = pack.program_calendar.zone
    noun, dates = _sessions_text(run, pack)
    last_seen = (
        f" The last session attended was on {day(before.starts_at, zone)} ({before.kind})."
        if before
        else " No session has been attended yet."
    )
    return [
        signal(
            "missed_in_a_row",
            rule,
            severity=rule.severity,
            episode=run[0].session_id,
            title=f"{len(run)} unexcused missed {noun} in a row",
            explanation=f"{len(run)} unexcused missed {noun} in a row: {dates}.{last_seen}",
            action=MISSES_ACTION,
            at=event.time,
            event_ids=[s.event_id for s in reversed(run)],
            facts={
                "misses_in_a_row": len(run),
                "threshold": rule.misses,
                "first_missed_at": run[0].starts_at.isoformat(),
                "last_missed_at": run[-1].starts_at.isoformat(),
                "last_attended_at": before.starts_at.isoformat() if before else None,
            },
        )
    ]


def run_of_misses_ended(state: PatientState, event: SessionAttended, pack: RulePack) -> list[Finding]:
    """An attended session ends the run of misses before it: that episode clears."""
    rule = pack.rules.missed_in_a_row
    record = state.sessions.get(event.data.session_id)
    if record is None or record.event_id != event.id or record.status != "attended":
        return []
    # Attendance is the most frequent event and usually ends no run: look closer only if enough
    # unexcused misses came before it at all.
    start = record.starts_at
    sessions = state.sessions.values()
    misses = [s for s in sessions if s.status == "missed" and not s.excused and s.starts_at <= start]
    if len(misses) < rule.misses:
        return []
    previous = max(
        (s.starts_at for s in sessions if s.status == "attended" and s.starts_at < start), default=None
    )
    run = [m for m in misses if previous is None or m.starts_at > previous]
    if len(run) < rule.misses:
        return []
    here = _order(record)
    run = sorted((m for m in run if _order(m) < here), key=_order)
    if len(run) < rule.misses:
        return []
    zone = pack.program_calendar.zone
    return [
        clearance(
            "missed_in_a_row",
            f"attended {record.kind} on {day(record.starts_at, zone)}: the run of "
            f"{count(len(run), 'missed session')} ended",
            event.time,
            run[0].session_id,
        )
    ]


# --- missed often --------------------------------------------------------------------------------


def _often(misses: list[SessionRecord], window: timedelta, at_least: int) -> list[bool]:
    """For each miss (in time order): were there ``at_least`` misses in the ``window`` up to it?"""
    flags: list[bool] = []
    low = 0
    for index, miss in enumerate(misses):
        while miss.starts_at - misses[low].starts_at > window:
            low += 1
        flags.append(index - low + 1 >= at_least)
    return flags


def missed_often(state: PatientState, event: SessionMissed, pack: RulePack) -> list[Finding]:
    """At least ``misses`` (3) unexcused missed sessions in ``days`` (14). Misses that keep the
    pattern going (each within ``days`` of the previous such miss) are one episode."""
    rule = pack.rules.missed_often
    record = _the_miss(state, event)
    if record is None:
        return []
    misses = sorted(
        [s for s in state.sessions.values() if s.status == "missed" and not s.excused], key=_order
    )
    if len(misses) < rule.misses:
        return []
    window = rule.window
    index = next(i for i, s in enumerate(misses) if s.session_id == record.session_id)
    flags = _often(misses, window, rule.misses)
    if not flags[index]:
        return []
    triggers = [m for m, flag in zip(misses[: index + 1], flags, strict=False) if flag]
    first = triggers[chain_start([t.starts_at for t in triggers], len(triggers) - 1, window)]
    recent = [m for m in misses[: index + 1] if record.starts_at - m.starts_at <= window]
    noun, dates = _sessions_text(recent, pack)
    return [
        signal(
            "missed_often",
            rule,
            severity=rule.severity,
            episode=first.session_id,
            title=f"{len(recent)} unexcused missed {noun} in {rule.days} days",
            explanation=(
                f"{len(recent)} unexcused missed {noun} in the {rule.days} days up to "
                f"{day(record.starts_at, pack.program_calendar.zone)}: {dates} "
                f"(the threshold is {rule.misses})."
            ),
            action=MISSED_OFTEN_ACTION,
            at=event.time,
            continues_within=window,
            event_ids=[s.event_id for s in reversed(recent)],
            facts={
                "misses": len(recent),
                "threshold": rule.misses,
                "window_days": rule.days,
                "first_missed_at": recent[0].starts_at.isoformat(),
                "last_missed_at": recent[-1].starts_at.isoformat(),
            },
        )
    ]


def missed_often_over(state: PatientState, at: datetime, pack: RulePack) -> list[Finding]:
    """At the first week close after an episode's last qualifying miss is more than ``days`` old, the
    episode can no longer grow: it clears (so its name is never reused). Every episode is judged on its
    own: a new run of misses does not keep an ended one open."""
    rule = pack.rules.missed_often
    misses = sorted((s for s in state.sessions.values() if _miss(s) and s.starts_at <= at), key=_order)
    window = rule.window
    flags = _often(misses, window, rule.misses)
    triggers = [m for m, flag in zip(misses, flags, strict=True) if flag]
    episodes: list[list[SessionRecord]] = []
    for trigger in triggers:
        if episodes and trigger.starts_at - episodes[-1][-1].starts_at <= window:
            episodes[-1].append(trigger)
        else:
            episodes.append([trigger])
    return [
        clearance(
            "missed_often",
            f"fewer than {rule.misses} unexcused misses in any {rule.days} days since "
            f"{day(episode[-1].starts_at, pack.program_calendar.zone)}",
            at,
            episode[0].session_id,
            continues_within=window,
        )
        for episode in episodes
        if window < at - episode[-1].starts_at <= window + WEEK
    ]


# --- early disengagement -------------------------------------------------------------------------


def early_disengagement(
    state: PatientState, event: SessionMissed | PatientEnrolled, pack: RulePack
) -> list[Finding]:
    """An unexcused miss among the program's first ``first_sessions`` (5) sessions. One episode per
    program (named after its start date).

    Both halves can come last: the miss, or the enrollment when the EHR sent it after the first
    sessions' attendance (within the lateness window). Judging only at the miss lost the alert then.
    """
    rule = pack.rules.early_disengagement
    enrollment = state.enrollment
    if enrollment is None:
        return []
    if isinstance(event, PatientEnrolled):
        if enrollment.event_id != event.id:
            return []  # an older enrollment than the one in force
    else:
        record = _the_miss(state, event)
        if record is None:
            return []
        here = _order(record)
        if sum(1 for s in state.sessions.values() if _order(s) < here) >= rule.first_sessions:
            return []  # not one of the first sessions (most misses are later in the program)
    first = sorted(state.sessions.values(), key=_order)[: rule.first_sessions]
    missed = [s for s in first if _miss(s)]
    if len(missed) < rule.misses:
        return []
    zone = pack.program_calendar.zone
    noun, dates = _sessions_text(missed, pack)
    return [
        signal(
            "early_disengagement",
            rule,
            severity=rule.severity,
            episode=f"program-{enrollment.program_start.isoformat()}",
            title=f"Unexcused miss in the first {rule.first_sessions} sessions",
            explanation=(
                f"Missed {count(len(missed), 'unexcused ' + noun.removesuffix('s'), 'unexcused ' + noun)} "
                f"({dates}) among the first {rule.first_sessions} sessions of the program, which started on "
                f"{day(enrollment.program_start, zone)}. Patients with no absence in their first 5 sessions "
                "complete the program in 63-79 % of cases."
            ),
            action=EARLY_ACTION,
            at=event.time,
            event_ids=[s.event_id for s in reversed(missed)],
            facts={
                "early_misses": len(missed),
                "threshold": rule.misses,
                "first_sessions": rule.first_sessions,
                "program_start": enrollment.program_start.isoformat(),
            },
        )
    ]


# --- the week against the plan -------------------------------------------------------------------


@dataclass(frozen=True)
class WeekAgainstPlan:
    """What a patient did in one program week, next to what the plan expected of them."""

    week: int
    start: datetime
    end: datetime
    group_sessions: int
    group_sessions_expected: int
    individual_sessions: int
    individual_sessions_expected: int
    hours: float
    hours_expected: float
    fellowship_meetings: int
    fellowship_meetings_expected: int
    missed_unexcused: int
    missed_excused: int
    session_event_ids: tuple[str, ...]  # latest first
    meeting_event_ids: tuple[str, ...]  # latest first
    # When the latest attendance or miss of the week was recorded (event time): a record after the
    # week closed may have changed what its close saw.
    recorded_until: datetime | None = None

    @property
    def sessions_short(self) -> list[str]:
        """What fell short of the treatment sessions the plan asks for (words)."""
        short = []
        if self.group_sessions < self.group_sessions_expected:
            short.append(f"{self.group_sessions} of {self.group_sessions_expected} group sessions")
        if self.individual_sessions < self.individual_sessions_expected:
            short.append(
                f"{self.individual_sessions} of {self.individual_sessions_expected} individual sessions"
            )
        if self.hours < self.hours_expected:
            short.append(f"{self.hours:g} of {self.hours_expected:g} hours")
        return short

    @property
    def fellowship_short(self) -> bool:
        return self.fellowship_meetings < self.fellowship_meetings_expected

    def meets_plan(self, with_fellowship: bool) -> bool:
        return not self.sessions_short and not (with_fellowship and self.fellowship_short)

    @property
    def attendance_share(self) -> float:
        """Treatment sessions attended against those expected (1.0 when none were expected)."""
        expected = self.group_sessions_expected + self.individual_sessions_expected
        if expected == 0:
            return 1.0
        return min(1.0, (self.group_sessions + self.individual_sessions) / expected)


def week_against_plan(state: PatientState, week: int, pack: RulePack) -> WeekAgainstPlan:
    """A program week's attendance against the weekly plan (needs an enrollment)."""
    return weeks_against_plan(state, range(week, week + 1), pack)[week]


def weeks_against_plan(state: PatientState, weeks: range, pack: RulePack) -> dict[int, WeekAgainstPlan]:
    """Consecutive program weeks against the plan, in one pass over the sessions and meetings (a
    week close looks at the last few weeks for several rules)."""
    enrollment = state.enrollment
    if enrollment is None:
        raise ValueError("a week against the plan needs an enrollment")
    calendar = pack.program_calendar
    bounds = [calendar.week_bounds(enrollment.program_start, week) for week in weeks]
    starts = [start for start, _ in bounds]
    first_start, last_end = bounds[0][0], bounds[-1][1]
    by_week: list[list[SessionRecord]] = [[] for _ in weeks]
    for session in state.sessions.values():
        if first_start <= session.starts_at < last_end:
            by_week[bisect_right(starts, session.starts_at) - 1].append(session)
    first_day, last_day = first_start.date(), (last_end - DAY).date()
    day_starts = [start.date() for start in starts]
    meetings_by_week: list[list[FellowshipMeeting]] = [[] for _ in weeks]
    for meeting in state.fellowship:
        if first_day <= meeting.attended_on <= last_day:
            meetings_by_week[bisect_right(day_starts, meeting.attended_on) - 1].append(meeting)
    return {
        week: _tally(week, start, end, sessions, meetings, enrollment.weekly_plan, pack)
        for week, (start, end), sessions, meetings in zip(
            weeks, bounds, by_week, meetings_by_week, strict=True
        )
    }


def _tally(
    week: int,
    start: datetime,
    end: datetime,
    sessions: list[SessionRecord],
    meetings: list[FellowshipMeeting],
    plan: WeeklyPlan,
    pack: RulePack,
) -> WeekAgainstPlan:
    done = {"group": 0, "individual": 0, "family": 0}
    excused = {"group": 0, "individual": 0, "family": 0}
    minutes = excused_minutes = unexcused = 0
    recorded_until: datetime | None = None
    for session in sessions:
        if session.status != "scheduled" and (recorded_until is None or session.decided_at > recorded_until):
            recorded_until = session.decided_at
        if session.status == "attended":
            done[session.kind] += 1
            minutes += session.duration_minutes
        elif session.status == "missed" and session.excused:
            excused[session.kind] += 1
            excused_minutes += session.duration_minutes
        elif session.status == "missed":
            unexcused += 1
    lower = pack.rules.weekly_plan_shortfall.excused_lower_the_plan
    sessions.sort(key=_order, reverse=True)
    return WeekAgainstPlan(
        week=week,
        start=start,
        end=end,
        group_sessions=done["group"],
        group_sessions_expected=max(0, plan.group_sessions - (excused["group"] if lower else 0)),
        individual_sessions=done["individual"],
        individual_sessions_expected=max(
            0, plan.individual_sessions - (excused["individual"] if lower else 0)
        ),
        hours=round(minutes / 60, 2),
        hours_expected=round(max(0.0, plan.hours - (excused_minutes / 60 if lower else 0)), 2),
        fellowship_meetings=len(meetings),
        fellowship_meetings_expected=plan.fellowship_meetings,
        missed_unexcused=unexcused,
        missed_excused=sum(excused.values()),
        session_event_ids=tuple(s.event_id for s in sessions),
        meeting_event_ids=tuple(m.event_id for m in reversed(meetings)),
        recorded_until=recorded_until,
    )


WEEKS_AT_A_TIME = KEPT_WEEKS
"""How many weeks :class:`Weeks` tallies at once, up to the one asked for: a week close asks for
the closing week and the few before it (step up: 2, step down: 4, a run of short weeks: up to the 6
the state keeps)."""


class Weeks:
    """A patient's program weeks against the plan, each computed once: a week close asks about the
    same weeks for several rules."""

    def __init__(self, state: PatientState, pack: RulePack) -> None:
        self.state = state
        self.pack = pack
        self._known: dict[int, WeekAgainstPlan] = {}

    def __getitem__(self, week: int) -> WeekAgainstPlan:
        tally = self._known.get(week)
        if tally is None:
            first = week - WEEKS_AT_A_TIME + 1
            while first in self._known:
                first += 1
            self._known.update(weeks_against_plan(self.state, range(first, week + 1), self.pack))
            tally = self._known[week]
        return tally


def _week_words(tally: WeekAgainstPlan, pack: RulePack) -> str:
    zone = pack.program_calendar.zone
    return f"Program week {tally.week} ({day(tally.start, zone)} - {day(tally.end - DAY, zone)})"


def _week_episode(state: PatientState, week: int) -> str:
    assert state.enrollment is not None
    return f"{state.enrollment.program_start.isoformat()}/week-{week}"


# --- runs of weeks below the plan ----------------------------------------------------------------


def first_week_kept(state: PatientState, at: datetime, pack: RulePack) -> int:
    """The first program week whose sessions and meetings the state still holds in full at a week
    close at ``at`` (0 or less: all of them). The state drops the facts from before the UTC day that
    lies ``retention`` behind its latest event (``engagement._prune``); an earlier week would look
    emptier, so shorter, than it was. The check fires before any event from after ``at`` is taken
    in, so ``at`` bounds that latest event; a later one (a direct call) moves the bound with it."""
    assert state.enrollment is not None
    latest = at if state.high_water is None or state.high_water < at else state.high_water
    horizon_day = (latest - DEFAULT_TUNING.retention).timestamp() // DAY_SECONDS
    horizon = datetime.fromtimestamp(horizon_day * DAY_SECONDS, UTC)
    calendar, program_start = pack.program_calendar, state.enrollment.program_start
    week = calendar.week_number(program_start, horizon)
    return week if calendar.week_bounds(program_start, week)[0] >= horizon else week + 1


@dataclass(frozen=True)
class RunOfShortWeeks:
    """The run of consecutive program weeks below the plan that the closing week ends."""

    weeks: tuple[WeekAgainstPlan, ...]  # oldest first, the closing week last: those the state holds
    first_known: bool  # weeks[0] is the run's first week (else the run began before the history kept)
    named_after: int  # the week the run's alert is named after

    @property
    def first(self) -> WeekAgainstPlan:
        return self.weeks[0]


def run_of_short_weeks(
    state: PatientState,
    week: int,
    at: datetime,
    weeks: Weeks,
    ends_run: Callable[[WeekAgainstPlan], bool],
) -> RunOfShortWeeks:
    """The run of short weeks that the closing (short) ``week`` belongs to, walking back to the week
    that ``ends_run`` (it met the plan), to week 1, or to the first week the state holds in full.

    One alert stands for the run, named after its first week, so a week close that finds the run
    still going updates that alert. When every week the state holds is short, the run's first week
    is out of sight: the run is then named after the first week held, a name that moves on week by
    week, and the alert lifecycle continues the run's live alert (``RUN_CONTINUES_WITHIN``).
    """
    kept = max(1, first_week_kept(state, at, weeks.pack))
    run = [weeks[week]]
    before = week - 1
    while before >= kept and not ends_run(weeks[before]):
        run.append(weeks[before])
        before -= 1
    run.reverse()
    first_known = before < 1 or before >= kept  # reached week 1, or the week before the run is in sight
    return RunOfShortWeeks(tuple(run), first_known, run[0].week)


def _recorded_after_close(tally: WeekAgainstPlan, grace: timedelta) -> bool:
    """Was an attendance or a miss of this week recorded (or corrected) after the week closed?"""
    return tally.recorded_until is not None and tally.recorded_until >= tally.end + grace


def _run_words(run: RunOfShortWeeks, plan: str, pack: RulePack) -> str:
    """`` It is the 3rd week in a row below the plan, since week 2 (Mon 9 Mar).`` (or nothing)."""
    in_a_row = ordinal(len(run.weeks))
    since = f"week {run.first.week} ({day(run.first.start, pack.program_calendar.zone)})"
    if not run.first_known:
        return (
            f" It is at least the {in_a_row} week in a row below {plan}: every week since {since} was, "
            f"and the {DEFAULT_TUNING.retention.days} days of history kept go back no further."
        )
    if len(run.weeks) == 1:
        return ""
    return f" It is the {in_a_row} week in a row below {plan}, since {since}."


def _in_a_row(run: RunOfShortWeeks) -> str:
    """`` (3 weeks in a row)`` for a title (nothing for a single week)."""
    if len(run.weeks) == 1 and run.first_known:
        return ""
    return f" ({len(run.weeks)}{'' if run.first_known else '+'} weeks in a row)"


def _run_facts(run: RunOfShortWeeks) -> dict[str, FactValue]:
    return {
        "weeks_in_a_row": len(run.weeks),
        "run_first_week": run.first.week,
        "run_first_week_known": run.first_known,
    }


def weekly_plan_shortfall(
    state: PatientState, week: int, at: datetime, pack: RulePack, weeks: Weeks | None = None
) -> list[Finding]:
    """At the close of ``week``: fewer group or individual sessions, or fewer hours, than the plan.
    One episode per run of consecutive short weeks, named after its first week: each further short
    week updates the alert (its numbers in the explanation); a week that meets the plan clears it,
    and the next short week begins a new run.

    A week whose attendance was recorded or corrected after it closed ends the run before it, as a
    week on plan does: its close may have judged it on plan and cleared that run, whose name would
    then silence the short weeks after it (a resolved episode never opens again).
    """
    rule = pack.rules.weekly_plan_shortfall
    known = weeks or Weeks(state, pack)
    tally = known[week]
    short = tally.sessions_short
    if not short:
        return [clearance("weekly_plan_shortfall", f"{_week_words(tally, pack)} met the plan", at)]
    grace = pack.week_close_grace
    run = run_of_short_weeks(
        state, week, at, known, lambda w: not w.sessions_short or _recorded_after_close(w, grace)
    )
    excused = f", {tally.missed_excused} excused (not expected)" if tally.missed_excused else ""
    return [
        signal(
            "weekly_plan_shortfall",
            rule,
            severity=rule.severity,
            episode=_week_episode(state, run.named_after),
            continues_within=RUN_CONTINUES_WITHIN,
            title=f"Week {tally.week} below plan{_in_a_row(run)}: {listing(short)}",
            explanation=(
                f"{_week_words(tally, pack)} closed below the plan: {listing(short)}. "
                f"{count(tally.missed_unexcused, 'unexcused miss', 'unexcused misses')}{excused}."
                f"{_run_words(run, 'the plan', pack)}"
            ),
            action=SHORTFALL_ACTION,
            at=at,
            event_ids=tally.session_event_ids,
            facts={
                "week": tally.week,
                "week_start": tally.start.date().isoformat(),
                "group_sessions": tally.group_sessions,
                "group_sessions_expected": tally.group_sessions_expected,
                "individual_sessions": tally.individual_sessions,
                "individual_sessions_expected": tally.individual_sessions_expected,
                "hours": tally.hours,
                "hours_expected": tally.hours_expected,
                "missed_unexcused": tally.missed_unexcused,
                "missed_excused": tally.missed_excused,
                **_run_facts(run),
            },
        ),
    ]


def fellowship_shortfall(
    state: PatientState, week: int, at: datetime, pack: RulePack, weeks: Weeks | None = None
) -> list[Finding]:
    """At the close of ``week``: fewer outside fellowship meetings than the plan requires (if it
    requires any). One episode per run of consecutive short weeks, as for the weekly plan. (A
    meeting recorded late can only lift a week to the plan, never take it below: the runs before
    it cannot merge, so no week needs to begin a run for that reason.)"""
    rule = pack.rules.fellowship_shortfall
    known = weeks or Weeks(state, pack)
    tally = known[week]
    if tally.fellowship_meetings_expected == 0:
        return []
    if not tally.fellowship_short:
        return [clearance("fellowship_shortfall", f"{_week_words(tally, pack)} met the fellowship plan", at)]
    run = run_of_short_weeks(state, week, at, known, lambda w: not w.fellowship_short)
    return [
        signal(
            "fellowship_shortfall",
            rule,
            severity=rule.severity,
            episode=_week_episode(state, run.named_after),
            continues_within=RUN_CONTINUES_WITHIN,
            title=(
                f"Week {tally.week}: {tally.fellowship_meetings} of {tally.fellowship_meetings_expected} "
                f"fellowship meetings{_in_a_row(run)}"
            ),
            explanation=(
                f"{_week_words(tally, pack)}: "
                f"{count(tally.fellowship_meetings, 'outside fellowship meeting')} recorded; "
                f"the plan asks for {tally.fellowship_meetings_expected} a week."
                f"{_run_words(run, 'the fellowship plan', pack)}"
            ),
            action=FELLOWSHIP_ACTION,
            at=at,
            event_ids=tally.meeting_event_ids,
            facts={
                "week": tally.week,
                "week_start": tally.start.date().isoformat(),
                "fellowship_meetings": tally.fellowship_meetings,
                "fellowship_meetings_expected": tally.fellowship_meetings_expected,
                **_run_facts(run),
            },
        ),
    ]

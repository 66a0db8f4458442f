"""Each program week against the plan, and the week-close rules: the weekly plan and the fellowship
plan, one alert per run of short weeks.

Sessions count in the week they started in; an excused miss (by default) lowers that week's
expectation. The misses rules are in :mod:`.misses`.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from iopcare.domain.engagement import (
    FellowshipMeeting,
    PatientState,
    SessionRecord,
    WeeklyPlan,
    retention_horizon,
)
from iopcare.domain.rules.evidence import clearance, signal
from iopcare.domain.rules.misses import SESSION_ORDER
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.rules.wording import count, day, listing, ordinal
from iopcare.domain.signals import FactValue, Finding

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
KEPT_WEEKS = 6
"""How far back a week close looks at most (6 program weeks: the default 42 days of history); it
never counts a week the state no longer holds in full (:func:`first_week_kept`)."""
RUN_CONTINUES_WITHIN = WEEK + DAY
"""Week closes come a week apart: a short week closing within this of the run's alert's last one
continues that alert (``Signal.continues_within``), also once the run's first weeks have left the
history kept and the rule names the run after the first week it still holds."""


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


def _plan(state: PatientState, week_start: datetime, pack: RulePack) -> WeeklyPlan:
    """The plan in effect for the week starting at ``week_start`` (a change takes effect from the
    first week starting on or after its date)."""
    plan = state.weekly_plan_from(pack.program_calendar.local_date(week_start))
    assert plan is not None  # the caller checked the enrollment
    return plan


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
        week: _tally(week, start, end, sessions, meetings, _plan(state, start, pack), pack)
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
    sessions.sort(key=SESSION_ORDER, reverse=True)
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
    lies ``retention`` behind its latest event (``engagement.retention_horizon``); an earlier week would look
    emptier, so shorter, than it was. The check fires before any event from after ``at`` is taken
    in, so ``at`` bounds that latest event; a later one (a direct call) moves the bound with it."""
    assert state.enrollment is not None
    latest = at if state.high_water is None or state.high_water < at else state.high_water
    horizon = retention_horizon(latest, pack.tuning)
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
            f"and the {pack.history.retention_days} days of history kept go back no further."
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
    if (
        run.first_known
        and len(run.weeks) < rule.weeks_in_a_row
        and tally.missed_unexcused < rule.unexcused_misses_at_once
    ):
        return []  # one short week with a single miss is ordinary: the run alerts if it goes on
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

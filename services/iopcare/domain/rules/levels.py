"""Level of care: recommend a step up when use continues despite treatment, a step down when recovery
holds. The system recommends; a clinician decides after reassessment (ASAM: never by length of stay).

Step up, from the ASAM rule of thumb "unable to control use despite active participation in less
intensive care": repeated use signals while attending, use with attendance well below the plan, or
use together with the loss of recovery housing. The dimensions this system sees evidence for are
named: 5 (relapse / continued-use potential) and 6 (recovery environment). One recommendation per
lapse: it is named after the lapse's first use signal (use signals no more than ``days`` apart), and
it supersedes the engagement and use alerts it summarizes.

Step down: ``weeks`` (4) consecutive weeks meeting the plan, no use signal, and a low mean craving.
One recommendation per level-of-care period (named after the enrollment or the last level change);
it is withdrawn (cleared) when eligibility lapses.
"""

from __future__ import annotations

from datetime import datetime

from iopcare.contract import (
    CheckInSubmitted,
    LevelOfCareChanged,
    SoberLivingReported,
    ToxicologyResulted,
)
from iopcare.domain.engagement import PatientState, UseSignal
from iopcare.domain.rules.evidence import chain_start, clearance, signal
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.rules.weeks import DAY, WeekAgainstPlan, Weeks
from iopcare.domain.rules.wording import count, day, listing
from iopcare.domain.signals import Finding

DIMENSION_5 = "relapse/continued-use potential"
DIMENSION_6 = "recovery environment"
UseEvent = CheckInSubmitted | ToxicologyResulted | SoberLivingReported


def _use_words(use: UseSignal, zone_day: str) -> str:
    if use.kind == "reported_use":
        return f"use reported {zone_day}"
    if use.kind == "positive_screen":
        return f"positive screen ({', '.join(use.substances)}) {zone_day}"
    return f"positive test at the house {zone_day}"


def is_use_event(state: PatientState, event: UseEvent) -> bool:
    """Does this (applied) event add a use signal, or an eviction, to the state?"""
    if isinstance(event, CheckInSubmitted):
        return event.data.substance_use_reported
    if isinstance(event, ToxicologyResulted):
        return bool(event.data.unexpected_positives())
    if event.data.kind not in ("positive_test", "evicted"):
        return False
    return any(h.event_id == event.id for h in reversed(state.house_incidents))  # not held for consent


def _closed_weeks(state: PatientState, at: datetime, how_many: int, weeks: Weeks) -> list[WeekAgainstPlan]:
    """The last ``how_many`` program weeks that ended by ``at``, latest first (fewer early on)."""
    assert state.enrollment is not None
    current = weeks.pack.program_calendar.week_number(state.enrollment.program_start, at)
    return [weeks[week] for week in range(current - 1, current - 1 - how_many, -1) if week >= 1]


def step_up(state: PatientState, at: datetime, pack: RulePack, weeks: Weeks | None = None) -> list[Finding]:
    """Recommend a step up if, as of ``at``, any of the three patterns holds (see the module)."""
    rule = pack.rules.step_up
    levels = pack.levels
    if state.enrollment is None or levels.at_step_up_level(state.level_of_care):
        return []  # already stepped up
    window = rule.window
    uses = [u for u in state.use_signals if u.at <= at]
    recent = [u for u in uses if at - u.at <= window]
    if not recent:
        return []
    zone = pack.program_calendar.zone
    attended = sum(
        1 for s in state.sessions.values() if s.status == "attended" and at - window <= s.starts_at <= at
    )
    reasons: list[str] = []
    evidence: list[str] = []
    patterns: list[str] = []
    if len(recent) >= rule.use_signals and attended >= rule.attending_min_sessions:
        patterns.append("repeated_use_while_attending")
        reasons.append(
            f"{len(recent)} use signals in {rule.days} days while attending treatment "
            f"({count(attended, 'session')} attended): "
            + listing([_use_words(u, day(u.at, zone)) for u in recent])
        )
    closed = _closed_weeks(state, at, rule.low_attendance_weeks, weeks or Weeks(state, pack))
    low = len(closed) == rule.low_attendance_weeks and all(
        w.attendance_share < rule.low_attendance_share for w in closed
    )
    if low:
        patterns.append("use_with_low_attendance")
        reasons.append(
            f"a use signal ({_use_words(recent[-1], day(recent[-1].at, zone))}) with attendance below "
            f"{rule.low_attendance_share:.0%} of the plan for {count(len(closed), 'week')} in a row ("
            + listing([f"week {w.week}: {w.attendance_share:.0%}" for w in reversed(closed)])
            + ")"
        )
        evidence.extend(e for w in closed for e in w.session_event_ids[:5])
    eviction_window = rule.eviction_window
    evictions = [
        h
        for h in state.house_incidents
        if h.kind == "evicted" and h.at <= at and at - h.at <= eviction_window
    ]
    near = [u for u in uses for h in evictions if abs(u.at - h.at) <= eviction_window]
    if evictions and near:
        patterns.append("eviction_with_use")
        reasons.append(
            f"evicted from the sober-living house on {day(evictions[-1].at, zone)}, with "
            f"{_use_words(near[-1], day(near[-1].at, zone))}"
        )
        evidence.append(evictions[-1].event_id)
    if not reasons:
        return []
    # The lapse this recommendation is about: the use signals chained to the latest one.
    first_use = uses[chain_start([u.at for u in uses], len(uses) - 1, window)]
    targets = levels.describe(levels.step_up_to)
    current = state.level_of_care or levels.program
    dimensions = f"dimension 5 ({DIMENSION_5}) points"
    if "eviction_with_use" in patterns:
        dimensions = f"dimensions 5 ({DIMENSION_5}) and 6 ({DIMENSION_6}) point"
    explanation = (
        "Use continues despite active participation at level "
        f"{current}: {'; '.join(reasons)}. ASAM {dimensions} to more support than this level gives. "
        f"Consider a step up to {targets}. The system recommends; a clinician decides after reassessment."
    )
    return [
        signal(
            "step_up",
            rule,
            severity=rule.severity,
            episode=first_use.event_id,
            title=f"Consider a step up from {current}: use despite treatment",
            explanation=explanation,
            action=(
                f"Reassess placement this week against the ASAM dimensions ({DIMENSION_5}; {DIMENSION_6}) "
                f"and discuss a step up to {targets} with the patient and the treatment team."
            ),
            at=at,
            event_ids=[u.event_id for u in reversed(recent)] + evidence,
            facts={
                "patterns": ",".join(patterns),
                "use_signals": len(recent),
                "use_signals_threshold": rule.use_signals,
                "window_days": rule.days,
                "sessions_attended": attended,
                "attending_min_sessions": rule.attending_min_sessions,
                "attendance_last_weeks": ",".join(
                    f"{w.week}:{w.attendance_share:.2f}" for w in reversed(closed)
                ),
                "low_attendance_share": rule.low_attendance_share,
                "evicted": bool(evictions),
                "current_level": current,
                "recommended_levels": ",".join(levels.step_up_to),
                "asam_dimensions": "5,6" if "eviction_with_use" in patterns else "5",
                "lapse_since": first_use.at.isoformat(),
            },
            supersedes=rule.supersedes,
            continues_within=window,
        )
    ]


def step_up_on_use(state: PatientState, event: UseEvent, pack: RulePack) -> list[Finding]:
    """A new use signal (or an eviction) may complete a step-up pattern."""
    return step_up(state, event.time, pack) if is_use_event(state, event) else []


# --- step down -----------------------------------------------------------------------------------


def _period(state: PatientState) -> str:
    """The current level-of-care period: named after the last level change, else the enrollment."""
    if state.level_changes:
        return state.level_changes[-1].event_id
    assert state.enrollment is not None
    return state.enrollment.event_id


def step_down(
    state: PatientState, week: int, at: datetime, pack: RulePack, weeks: Weeks | None = None
) -> list[Finding]:
    """At the close of ``week``: recommend level ``step_down_to`` if the last ``weeks`` weeks all met
    the plan, had no use signal, and mean craving stayed at or below the threshold; otherwise withdraw
    the recommendation."""
    rule = pack.rules.step_down
    levels = pack.levels
    if state.enrollment is None or state.level_of_care != levels.program or week < rule.weeks:
        return []
    known = weeks or Weeks(state, pack)
    run = [known[w] for w in range(week - rule.weeks + 1, week + 1)]
    start, end = run[0].start, run[-1].end
    uses = [u for u in state.use_signals if start <= u.at < end]
    cravings = [c.craving for c in state.checkins if start <= c.at < end]
    mean_craving = round(sum(cravings) / len(cravings), 2) if cravings else None
    short = [w.week for w in run if not w.meets_plan(rule.fellowship_counts)]
    zone = pack.program_calendar.zone
    why_not: list[str] = []
    if short:
        why_not.append(f"week {listing([str(w) for w in short])} did not meet the plan")
    if uses:
        why_not.append(f"{count(len(uses), 'use signal')} (latest {day(uses[-1].at, zone)})")
    if mean_craving is None:
        why_not.append("no check-ins to judge craving")
    elif mean_craving > rule.mean_craving_at_most:
        why_not.append(f"mean craving {mean_craving:g} is above {rule.mean_craving_at_most:g}")
    if why_not:
        return [
            clearance("step_down", f"not eligible for a step down: {'; '.join(why_not)}", at, _period(state))
        ]
    target = levels.describe([levels.step_down_to])
    return [
        signal(
            "step_down",
            rule,
            severity=rule.severity,
            episode=_period(state),
            title=f"Consider a step down to {target}",
            explanation=(
                f"Weeks {run[0].week}-{run[-1].week} ({day(start, zone)} - "
                f"{day(end - DAY, zone)}) all met the plan"
                f"{' including fellowship meetings' if rule.fellowship_counts else ''}, with no use signal "
                f"and a mean craving of {mean_craving:g} (at most {rule.mean_craving_at_most:g}) "
                f"over {count(len(cravings), 'check-in')}. Recovery is holding at level {levels.program}: "
                f"consider a step down to {target}. The system recommends; a clinician decides."
            ),
            action=(
                f"Reassess at the next review whether the patient is ready for {target}, and plan a gradual "
                "reduction of hours with the patient."
            ),
            at=at,
            event_ids=[e for w in reversed(run) for e in w.session_event_ids[:10]],
            facts={
                "weeks_meeting_plan": rule.weeks,
                "from_week": run[0].week,
                "to_week": run[-1].week,
                "use_signals": 0,
                "mean_craving": mean_craving,
                "mean_craving_threshold": rule.mean_craving_at_most,
                "checkins": len(cravings),
                "current_level": levels.program,
                "recommended_level": levels.step_down_to,
            },
        )
    ]


def _eviction(event: UseEvent) -> bool:
    return isinstance(event, SoberLivingReported) and event.data.kind == "evicted"


def step_down_withdrawn(state: PatientState, event: UseEvent, pack: RulePack) -> list[Finding]:
    """A use signal (or eviction) withdraws a step-down recommendation at once."""
    if state.enrollment is None or not is_use_event(state, event):
        return []
    what = "eviction" if _eviction(event) else "use signal"
    return [
        clearance(
            "step_down",
            f"{what} on {day(event.time, pack.program_calendar.zone)}: not eligible for a step down",
            event.time,
            _period(state),
        )
    ]


def _moved(event: LevelOfCareChanged, pack: RulePack) -> int:
    """+1 for a move to a more intensive level, -1 to a less intensive one, 0 otherwise."""
    new, old = pack.levels.rank(event.data.to_level), pack.levels.rank(event.data.from_level)
    if new is not None and old is not None and new != old:
        return 1 if new > old else -1
    return {"step_up": 1, "step_down": -1}.get(event.data.reason_code, 0)


def stepped_up(state: PatientState, event: LevelOfCareChanged, pack: RulePack) -> list[Finding]:
    """A clinician stepped the patient up: the step-up recommendation has been acted on."""
    if _moved(event, pack) <= 0:
        return []
    when = day(event.time, pack.program_calendar.zone)
    return [clearance("step_up", f"stepped up to {event.data.to_level} on {when}", event.time)]


def stepped_down(state: PatientState, event: LevelOfCareChanged, pack: RulePack) -> list[Finding]:
    """A clinician stepped the patient down: the step-down recommendation has been acted on."""
    if _moved(event, pack) >= 0:
        return []
    when = day(event.time, pack.program_calendar.zone)
    return [clearance("step_down", f"stepped down to {event.data.to_level} on {when}", event.time)]

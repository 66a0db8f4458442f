"""The relapse-risk score: 0-100, points per contributing factor, each with its reason. Pure.

Interpretable on purpose: the score is the sum of the points of the factors present (capped at 100),
every factor says in words why it counts, and every number is in the rule pack (``[risk]``). The
factors are the predictors the evidence names (recent use, craving, disengagement, the recovery
environment; docs/rules.md). The trend compares the score now with the score ``trend_days`` (7) days
earlier *by event time*: only facts known to have happened by then count (a session counts as missed
from when it was recorded missed).

The score is a summary for the counselor's inbox, not a validated prediction model: the default
points are a starting point for a clinic to calibrate with its own backtests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from iopcare.domain.engagement import CheckInRecord, PatientState, SessionRecord
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.rules.weeks import week_against_plan
from iopcare.domain.rules.wording import count, day

__all__ = ["RiskFactor", "RiskScore", "RiskTrend", "risk_score", "risk_trend"]

MAX_SCORE = 100


@dataclass(frozen=True)
class RiskFactor:
    """One reason the score is what it is."""

    name: str  # the factor's key in the pack, e.g. "reported_use"
    points: int
    reason: str  # plain language, with the date or the numbers


@dataclass(frozen=True)
class RiskScore:
    """The relapse-risk score of a patient as of a time."""

    score: int
    as_of: datetime
    factors: tuple[RiskFactor, ...]

    def explanation(self) -> str:
        """``45 of 100: use reported on Tue 4 Mar (+20); craving 9 on Wed 5 Mar (+15); ...``."""
        if not self.factors:
            return f"{self.score} of {MAX_SCORE}: no risk factor present"
        parts = "; ".join(f"{f.reason} (+{f.points})" for f in self.factors)
        return f"{self.score} of {MAX_SCORE}: {parts}"

    def as_facts(self) -> dict[str, int]:
        """The score and each factor's points, as alert evidence facts (``risk.reported_use``)."""
        return {"risk_score": self.score, **{f"risk.{f.name}": f.points for f in self.factors}}


@dataclass(frozen=True)
class RiskTrend:
    """The score now against the score some days earlier."""

    now: RiskScore
    before: RiskScore
    change: int
    direction: Literal["rising", "falling", "steady"]


def _checkins(state: PatientState, since: datetime, as_of: datetime) -> list[CheckInRecord]:
    return [c for c in state.checkins if since < c.at <= as_of]


def _missed_by(session: SessionRecord, as_of: datetime) -> bool:
    return session.status == "missed" and not session.excused and session.decided_at <= as_of


Factor = Callable[[PatientState, datetime, RulePack], RiskFactor | None]


def _use_factor(kind: str, name: str, words: str) -> Factor:
    def factor(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
        points: int = getattr(pack.risk.factors, name).points
        days: int = getattr(pack.risk.factors, name).days
        since = as_of - timedelta(days=days)
        found = [u for u in state.use_signals if u.kind == kind and since < u.at <= as_of]
        if not found or not points:
            return None
        zone = pack.program_calendar.zone
        what = f"{words} ({', '.join(found[-1].substances)})" if found[-1].substances else words
        return RiskFactor(name, points, f"{what} on {day(found[-1].at, zone)}")

    return factor


def _craving_high(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
    factor = pack.risk.factors.craving_high
    high = [
        c
        for c in _checkins(state, as_of - timedelta(days=factor.days), as_of)
        if c.craving >= factor.at_least
    ]
    if not high or not factor.points:
        return None
    peak = max(high, key=lambda c: (c.craving, c.at))
    return RiskFactor(
        "craving_high", factor.points, f"craving {peak.craving} on {day(peak.at, pack.program_calendar.zone)}"
    )


def _craving_rising(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
    factor = pack.risk.factors.craving_rising
    last = [c for c in state.checkins if c.at <= as_of][-factor.checkins :]
    if len(last) < factor.checkins or not factor.points:
        return None
    rise = last[-1].craving - last[0].craving
    if rise < factor.rise_at_least:
        return None
    return RiskFactor(
        "craving_rising",
        factor.points,
        f"craving up {rise} points over {factor.checkins} check-ins "
        f"({last[0].craving} to {last[-1].craving})",
    )


def _low_mood(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
    factor = pack.risk.factors.low_mood
    recent = _checkins(state, as_of - timedelta(days=factor.days), as_of)
    if not recent or not factor.points:
        return None
    mean = sum(c.mood for c in recent) / len(recent)
    if mean > factor.mean_at_most:
        return None
    return RiskFactor("low_mood", factor.points, f"mean mood {mean:.1f} of 10 over {factor.days} days")


def _short_sleep(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
    factor = pack.risk.factors.short_sleep
    recent = _checkins(state, as_of - timedelta(days=factor.days), as_of)
    if not recent or not factor.points:
        return None
    mean = sum(c.sleep_hours for c in recent) / len(recent)
    if mean >= factor.mean_below_hours:
        return None
    return RiskFactor("short_sleep", factor.points, f"mean sleep {mean:.1f} hours over {factor.days} days")


def _missed_sessions(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
    factor = pack.risk.factors.missed_sessions
    since = as_of - timedelta(days=factor.days)
    misses = sum(1 for s in state.sessions.values() if _missed_by(s, as_of) and since < s.starts_at <= as_of)
    points = min(factor.max_points, misses * factor.points_each)
    if not points:
        return None
    return RiskFactor(
        "missed_sessions", points, f"{count(misses, 'unexcused missed session')} in {factor.days} days"
    )


def _missed_in_a_row(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
    factor = pack.risk.factors.missed_in_a_row
    run = 0
    for session in sorted(state.sessions.values(), key=lambda s: (s.starts_at, s.session_id)):
        if session.starts_at > as_of:
            break
        if session.status == "attended" and session.decided_at <= as_of:
            run = 0
        elif _missed_by(session, as_of):
            run += 1
    if run < factor.misses or not factor.points:
        return None
    return RiskFactor("missed_in_a_row", factor.points, f"{run} unexcused missed sessions in a row")


def _silence(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
    factor = pack.risk.factors.silence
    earlier = [c for c in state.checkins if c.at <= as_of]
    if earlier:
        since, what = earlier[-1].at, "last check-in"
    elif state.enrollment is not None and state.enrollment.enrolled_at <= as_of:
        since, what = state.enrollment.enrolled_at, "enrollment"
    else:
        return None
    hours = (as_of - since).total_seconds() / 3600
    if hours < factor.hours or not factor.points:
        return None
    return RiskFactor("silence", factor.points, f"no check-in for {round(hours)} hours (since {what})")


def _low_attendance(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
    factor = pack.risk.factors.low_attendance
    if state.enrollment is None or not factor.points:
        return None
    week = pack.program_calendar.week_number(state.enrollment.program_start, as_of) - 1
    if week < 1:
        return None
    share = week_against_plan(state, week, pack).attendance_share
    if share >= factor.share_below:
        return None
    return RiskFactor("low_attendance", factor.points, f"attended {share:.0%} of the plan in week {week}")


def _safety(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
    factor, rule = pack.risk.factors.safety, pack.rules.safety
    recent = _checkins(state, as_of - timedelta(days=factor.days), as_of)
    flagged = [
        c
        for c in recent
        if (rule.safety_concern and c.safety_concern)
        or (c.phq9_item9 is not None and c.phq9_item9 >= rule.phq9_item9_at_least)
        or (rule.cssrs_positive and c.cssrs_positive)
    ]
    if not flagged or not factor.points:
        return None
    return RiskFactor(
        "safety",
        factor.points,
        f"safety concern at the check-in of {day(flagged[-1].at, pack.program_calendar.zone)}",
    )


def _house(name: str, kinds: tuple[str, ...], words: str) -> Factor:
    def factor(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
        points: int = getattr(pack.risk.factors, name).points
        days: int = getattr(pack.risk.factors, name).days
        since = as_of - timedelta(days=days)
        found = [h for h in state.house_incidents if h.kind in kinds and since < h.at <= as_of]
        if not found or not points:
            return None
        return RiskFactor(
            name,
            points,
            f"{words} ({found[-1].kind.replace('_', ' ')}) on "
            f"{day(found[-1].at, pack.program_calendar.zone)}",
        )

    return factor


def _early_disengagement(state: PatientState, as_of: datetime, pack: RulePack) -> RiskFactor | None:
    factor, rule = pack.risk.factors.early_disengagement, pack.rules.early_disengagement
    first = sorted(state.sessions.values(), key=lambda s: (s.starts_at, s.session_id))[: rule.first_sessions]
    missed = [s for s in first if _missed_by(s, as_of)]
    if not missed or not factor.points:
        return None
    return RiskFactor(
        "early_disengagement",
        factor.points,
        f"{count(len(missed), 'unexcused miss', 'unexcused misses')} "
        f"in the first {rule.first_sessions} sessions",
    )


_FACTORS: tuple[Factor, ...] = (
    _use_factor("reported_use", "reported_use", "use reported"),
    _use_factor("positive_screen", "positive_screen", "positive screen"),
    _use_factor("house_positive", "house_positive", "positive test at the house"),
    _craving_high,
    _craving_rising,
    _low_mood,
    _short_sleep,
    _missed_sessions,
    _missed_in_a_row,
    _silence,
    _low_attendance,
    _safety,
    _house("housing_unstable", ("left", "evicted"), "housing lost"),
    _house("house_incident", ("curfew_violation", "missed_house_meeting", "conflict"), "house incident"),
    _early_disengagement,
)


def risk_score(state: PatientState, as_of: datetime, pack: RulePack) -> RiskScore:
    """The relapse-risk score as of ``as_of`` from the facts known by then (0-100, capped)."""
    factors = tuple(f for f in (factor(state, as_of, pack) for factor in _FACTORS) if f is not None)
    return RiskScore(min(MAX_SCORE, sum(f.points for f in factors)), as_of, factors)


def risk_trend(state: PatientState, as_of: datetime, pack: RulePack) -> RiskTrend:
    """The score as of ``as_of`` against ``risk.trend_days`` earlier (by event time)."""
    now = risk_score(state, as_of, pack)
    before = risk_score(state, as_of - timedelta(days=pack.risk.trend_days), pack)
    change = now.score - before.score
    direction: Literal["rising", "falling", "steady"] = (
        "steady" if abs(change) <= pack.risk.steady_within else "rising" if change > 0 else "falling"
    )
    return RiskTrend(now, before, change, direction)

"""Craving: high, or above the patient's own usual range (with recent use, the strongest lapse
predictors).

High cravings (or rises) no more than ``episode_gap_days`` apart are one episode. An episode
clears at the first check-in after the gap has passed without another high craving (or rise).
"""

from __future__ import annotations

import functools
import math

from iopcare.contract import CheckInSubmitted
from iopcare.domain.engagement import CheckInRecord, PatientState
from iopcare.domain.rules.baseline import UsualRange, sustained_against_usual
from iopcare.domain.rules.evidence import (
    checkin_episode_over,
    checkin_index,
    first_of_checkin_episode,
    signal,
)
from iopcare.domain.rules.pack import CravingRising, RulePack
from iopcare.domain.rules.wording import day, listing
from iopcare.domain.signals import FactValue, Finding

CRAVING_ACTION = (
    "Check in with the patient within a day about the craving, its triggers and the coping plan; "
    "consider an extra individual session."
)


def craving_high(state: PatientState, event: CheckInSubmitted, pack: RulePack) -> list[Finding]:
    """Craving at or above the threshold (8 of 10)."""
    rule = pack.rules.craving_high
    checkins = state.checkins
    index = checkin_index(checkins, event.id)
    if index < 0:
        return []

    def high(k: int) -> bool:
        return checkins[k].craving >= rule.at_least

    zone = pack.program_calendar.zone
    no_more = f"craving of {rule.at_least} or more"
    findings = checkin_episode_over("craving_high", checkins, index, rule.gap, high, no_more, zone)
    if not high(index):
        return findings
    current = checkins[index]
    episode = checkins[first_of_checkin_episode(checkins, index, rule.gap, high) : index + 1]
    episode = [c for c in episode if c.craving >= rule.at_least]
    earlier = (
        f" Craving has been {rule.at_least} or more {len(episode)} times since {day(episode[0].at, zone)}: "
        + listing([f"{day(c.at, zone)}: {c.craving}" for c in episode])
        + "."
        if len(episode) > 1
        else ""
    )
    findings.append(
        signal(
            "craving_high",
            rule,
            severity=rule.severity,
            episode=episode[0].event_id,
            title=f"High craving ({current.craving} of 10) on {day(current.at, zone)}",
            explanation=(
                f"The patient rated craving {current.craving} of 10 at the check-in of "
                f"{day(current.at, zone)} (the threshold is {rule.at_least}).{earlier}"
            ),
            action=CRAVING_ACTION,
            at=event.time,
            continues_within=rule.gap,
            event_ids=[c.event_id for c in reversed(episode)],
            facts={
                "craving": current.craving,
                "threshold": rule.at_least,
                "high_cravings_in_episode": len(episode),
                "episode_gap_days": rule.episode_gap_days,
            },
        )
    )
    return findings


def craving_rising(state: PatientState, event: CheckInSubmitted, pack: RulePack) -> list[Finding]:
    """Craving above the patient's own usual range, sustained over the last check-ins (the floor
    rule, a fixed rise, until there is a baseline): see ``CravingRising`` in the rule pack."""
    rule = pack.rules.craving_rising
    checkins = state.checkins
    index = checkin_index(checkins, event.id)
    if index < 0:
        return []

    @functools.cache
    def judge(k: int) -> tuple[bool, UsualRange | None]:
        return _above_usual(checkins, k, rule)

    def rise(k: int) -> bool:
        return judge(k)[0]

    zone = pack.program_calendar.zone
    findings = checkin_episode_over(
        "craving_rising", checkins, index, rule.gap, rise, "craving above the usual range", zone
    )
    if not rise(index):
        return findings
    usual = judge(index)[1]
    current = checkins[index]
    if usual is not None:
        window = checkins[index - rule.sustained_checkins + 1 : index + 1]
        title = f"Craving above the usual range: {listing([str(c.craving) for c in window])}"
        explanation = (
            f"Craving {listing([f'{c.craving} on {day(c.at, zone)}' for c in window])}, "
            f"{'each ' if len(window) > 1 else ''}above the patient's usual range: over the "
            f"{rule.baseline_days} days before, craving was {usual.words()} (median {usual.median:g}, "
            f"{usual.checkins} check-ins). A sustained rise above one's own range is an early warning "
            "of a lapse."
        )
        facts: dict[str, FactValue] = {
            "craving_last": current.craving,
            "usual_median": usual.median,
            "usual_low": usual.low,
            "usual_high": usual.high,
            "usual_spread": usual.spread,
            "baseline_checkins": usual.checkins,
            "threshold": _bar(usual, rule),
            "sustained_checkins": len(window),
        }
    else:
        window = checkins[index - rule.checkins + 1 : index + 1]
        rising = window[-1].craving - window[0].craving
        title = f"Craving rising: {window[0].craving} to {window[-1].craving} over {len(window)} check-ins"
        explanation = (
            f"Craving rose by {rising} points over the last {len(window)} check-ins ("
            + listing([f"{day(c.at, zone)}: {c.craving}" for c in window])
            + f") to {current.craving}; there are not yet {rule.baseline_min_checkins} check-ins in "
            f"{rule.baseline_days} days to judge it against the patient's own range, so the fixed "
            f"floor applies (a rise of {rule.rise_at_least} or more ending at {rule.at_least} or more)."
        )
        facts = {
            "craving_first": window[0].craving,
            "craving_last": current.craving,
            "rise": rising,
            "rise_threshold": rule.rise_at_least,
            "checkins": len(window),
        }
    findings.append(
        signal(
            "craving_rising",
            rule,
            severity=rule.severity,
            episode=checkins[first_of_checkin_episode(checkins, index, rule.gap, rise)].event_id,
            title=title,
            explanation=explanation,
            action=CRAVING_ACTION,
            at=event.time,
            continues_within=rule.gap,
            event_ids=[c.event_id for c in reversed(window)],
            facts=facts,
        )
    )
    return findings


def _bar(usual: UsualRange, rule: CravingRising) -> int:
    """The craving the patient's usual range puts the line at (never below the rule's floor)."""
    margin = max(rule.above_usual_by, rule.spread_multiplier * usual.spread)
    return max(rule.at_least, math.ceil(usual.median + margin))


def _above_usual(
    checkins: list[CheckInRecord], k: int, rule: CravingRising
) -> tuple[bool, UsualRange | None]:
    """Is the check-in at ``k`` the last of a sustained run above the patient's usual range (or,
    without a baseline, of a rise by the floor rule)? With the baseline it was judged against."""
    span = rule.checkins - 1

    def floor(k: int) -> bool:
        return (
            k >= span
            and checkins[k].craving >= rule.at_least
            and checkins[k].craving - checkins[k - span].craving >= rule.rise_at_least
        )

    return sustained_against_usual(
        checkins,
        k,
        _craving,
        sustained=rule.sustained_checkins,
        days=rule.baseline_days,
        min_checkins=rule.baseline_min_checkins,
        beyond=lambda usual, craving: craving >= _bar(usual, rule),
        without_baseline=floor,
    )


def _craving(checkin: CheckInRecord) -> int:
    return checkin.craving

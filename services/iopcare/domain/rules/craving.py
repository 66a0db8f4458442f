"""Craving: high, or above the patient's own usual range (with recent use, the strongest lapse
predictors).

High cravings (or rises) no more than ``episode_gap_days`` apart are one episode. An episode
clears at the first check-in after the gap has passed without another high craving (or rise).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta, tzinfo

from iopcare.contract import CheckInSubmitted
from iopcare.domain.engagement import CheckInRecord, PatientState
from iopcare.domain.rules.baseline import UsualCraving, usual_craving
from iopcare.domain.rules.evidence import checkin_index, clearance, signal
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
    findings = _episode_over("craving_high", checkins, index, rule.gap, high, no_more, zone)
    if not high(index):
        return findings
    current = checkins[index]
    episode = checkins[_first_of_episode(checkins, index, rule.gap, high) : index + 1]
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


def _episode_over(
    rule_id: str,
    checkins: list[CheckInRecord],
    index: int,
    gap: timedelta,
    trigger: Callable[[int], bool],
    no_more: str,
    zone: tzinfo,
) -> list[Finding]:
    """The clearance of the episode that the check-in at ``index`` ends, being the first one more
    than ``gap`` after the episode's last trigger (``no_more``: what stopped happening)."""
    last = _last_of_ended_episode(checkins, index, gap, trigger)
    if last is None:
        return []
    current = checkins[index]
    return [
        clearance(
            rule_id,
            f"no {no_more} for over {gap.days} days since {day(checkins[last].at, zone)} "
            f"(craving {current.craving} on {day(current.at, zone)})",
            current.at,
            checkins[_first_of_episode(checkins, last, gap, trigger)].event_id,
            continues_within=gap,
        )
    ]


def _first_of_episode(
    checkins: list[CheckInRecord], last: int, gap: timedelta, trigger: Callable[[int], bool]
) -> int:
    """Index of the first trigger of the episode whose trigger is at ``last``: walking back, the
    episode goes on while each trigger follows the one before it within ``gap`` (no further back
    than that, so a costly trigger is asked about the episode's check-ins only)."""
    first = last
    for k in range(last - 1, -1, -1):
        if checkins[first].at - checkins[k].at > gap:
            break
        if trigger(k):
            first = k
    return first


def _last_of_ended_episode(
    checkins: list[CheckInRecord], index: int, gap: timedelta, trigger: Callable[[int], bool]
) -> int | None:
    """If the check-in at ``index`` is the first one more than ``gap`` after an episode's last
    trigger, that trigger's index (the episode is over); else None."""
    if index == 0:
        return None
    still_open, open_before = checkins[index].at - gap, checkins[index - 1].at - gap
    # The episode's last trigger lies within the gap of the previous check-in but not of this one,
    # and no trigger after it. Triggers are rare: look in that narrow span first (usually one
    # check-in), and only then check that the gap after it is free of triggers.
    first_in_gap = index
    while first_in_gap > 0 and checkins[first_in_gap - 1].at >= still_open:
        first_in_gap -= 1
    last = first_in_gap - 1
    while last >= 0 and checkins[last].at >= open_before and not trigger(last):
        last -= 1
    if last < 0 or checkins[last].at < open_before:
        return None
    if any(trigger(k) for k in range(first_in_gap, index)):
        return None
    return last


def craving_rising(state: PatientState, event: CheckInSubmitted, pack: RulePack) -> list[Finding]:
    """Craving above the patient's own usual range, sustained over the last check-ins (the floor
    rule, a fixed rise, until there is a baseline): see ``CravingRising`` in the rule pack."""
    rule = pack.rules.craving_rising
    checkins = state.checkins
    index = checkin_index(checkins, event.id)
    if index < 0:
        return []
    judged: dict[int, tuple[bool, UsualCraving | None]] = {}

    def judge(k: int) -> tuple[bool, UsualCraving | None]:
        if k not in judged:
            judged[k] = _above_usual(checkins, k, rule)
        return judged[k]

    def rise(k: int) -> bool:
        return judge(k)[0]

    zone = pack.program_calendar.zone
    findings = _episode_over(
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
            episode=checkins[_first_of_episode(checkins, index, rule.gap, rise)].event_id,
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


def _bar(usual: UsualCraving, rule: CravingRising) -> int:
    """The craving the patient's usual range puts the line at (never below the rule's floor)."""
    margin = max(rule.above_usual_by, rule.spread_multiplier * usual.spread)
    return max(rule.at_least, math.ceil(usual.median + margin))


def _above_usual(
    checkins: list[CheckInRecord], k: int, rule: CravingRising
) -> tuple[bool, UsualCraving | None]:
    """Is the check-in at ``k`` the last of a sustained run above the patient's usual range (or,
    without a baseline, of a rise by the floor rule)? With the baseline it was judged against."""
    sustained = rule.sustained_checkins
    if k < sustained - 1:
        return False, None
    run = checkins[k - sustained + 1 : k + 1]
    usual = usual_craving(
        checkins, run[0].at, days=rule.baseline_days, min_checkins=rule.baseline_min_checkins
    )
    if usual is not None:
        bar = _bar(usual, rule)
        return all(c.craving >= bar for c in run), usual
    span = rule.checkins - 1
    floor = (
        k >= span
        and checkins[k].craving >= rule.at_least
        and checkins[k].craving - checkins[k - span].craving >= rule.rise_at_least
    )
    return floor, None

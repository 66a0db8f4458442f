"""Craving: high, or rising over the last check-ins (with recent use, the strongest lapse predictors).

High cravings (or rises) no more than ``episode_gap_days`` apart are one episode. A high-craving
episode clears at the first check-in after the gap has passed without another high craving.
"""

from __future__ import annotations

from iopcare.contract import CheckInSubmitted
from iopcare.domain.engagement import CheckInRecord, PatientState
from iopcare.domain.rules.evidence import chain_start, checkin_index, clearance, signal
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.rules.wording import day, listing
from iopcare.domain.signals import Finding

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
    current = checkins[index]
    if current.craving < rule.at_least:
        return _high_craving_over(checkins, index, pack)
    high = [c for c in checkins[: index + 1] if c.craving >= rule.at_least]
    episode = high[chain_start([c.at for c in high], len(high) - 1, rule.gap) :]
    zone = pack.program_calendar.zone
    earlier = (
        f" Craving has been {rule.at_least} or more {len(episode)} times since {day(episode[0].at, zone)}: "
        + listing([f"{day(c.at, zone)}: {c.craving}" for c in episode])
        + "."
        if len(episode) > 1
        else ""
    )
    return [
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
            event_ids=[c.event_id for c in reversed(episode)],
            facts={
                "craving": current.craving,
                "threshold": rule.at_least,
                "high_cravings_in_episode": len(episode),
                "episode_gap_days": rule.episode_gap_days,
            },
        )
    ]


def _high_craving_over(checkins: list[CheckInRecord], index: int, pack: RulePack) -> list[Finding]:
    """The first check-in more than the gap after the last high craving ends that episode."""
    rule = pack.rules.craving_high
    if index == 0:
        return []
    current, previous = checkins[index], checkins[index - 1]
    # The episode ends here if its last high craving is within the gap of the previous check-in
    # but no longer of this one.
    still_open, open_before = current.at - rule.gap, previous.at - rule.gap
    last = index - 1
    while last >= 0 and checkins[last].at >= still_open:
        if checkins[last].craving >= rule.at_least:
            return []
        last -= 1
    while last >= 0 and checkins[last].at >= open_before and checkins[last].craving < rule.at_least:
        last -= 1
    if last < 0 or checkins[last].at < open_before:
        return []
    high = [c for c in checkins[: last + 1] if c.craving >= rule.at_least]
    first = high[chain_start([c.at for c in high], len(high) - 1, rule.gap)]
    zone = pack.program_calendar.zone
    return [
        clearance(
            "craving_high",
            f"no craving of {rule.at_least} or more for over {rule.episode_gap_days} days since "
            f"{day(checkins[last].at, zone)} (craving {current.craving} on {day(current.at, zone)})",
            current.at,
            first.event_id,
        )
    ]


def craving_rising(state: PatientState, event: CheckInSubmitted, pack: RulePack) -> list[Finding]:
    """Craving up by at least ``rise_at_least`` points across the last ``checkins`` check-ins."""
    rule = pack.rules.craving_rising
    checkins = state.checkins
    index = checkin_index(checkins, event.id)
    span = rule.checkins - 1
    if index < span:
        return []
    window = checkins[index - span : index + 1]
    rise = window[-1].craving - window[0].craving
    if rise < rule.rise_at_least:
        return []
    # The episode's first rise: walk back over earlier rises, each within the gap of the next.
    first, i = window[-1], index - 1
    while i >= span and first.at - checkins[i].at <= rule.gap:
        if checkins[i].craving - checkins[i - span].craving >= rule.rise_at_least:
            first = checkins[i]
        i -= 1
    zone = pack.program_calendar.zone
    return [
        signal(
            "craving_rising",
            rule,
            severity=rule.severity,
            episode=first.event_id,
            title=f"Craving rising: {window[0].craving} to {window[-1].craving} over {len(window)} check-ins",
            explanation=(
                f"Craving rose by {rise} points over the last {len(window)} check-ins ("
                + listing([f"{day(c.at, zone)}: {c.craving}" for c in window])
                + f"); a rise of {rule.rise_at_least} or more is an early warning of a lapse."
            ),
            action=CRAVING_ACTION,
            at=event.time,
            event_ids=[c.event_id for c in reversed(window)],
            facts={
                "craving_first": window[0].craving,
                "craving_last": window[-1].craving,
                "rise": rise,
                "rise_threshold": rule.rise_at_least,
                "checkins": len(window),
            },
        )
    ]

"""What every finding carries, shaped to fit the alert contract, and how episodes are named.

An **episode** is what one alert stands for. Rules whose trigger repeats (use reported again,
another high craving) chain their triggers: triggers no more than ``gap`` apart are one episode,
named after its first trigger (:func:`chain_start`). A repeat in the same episode therefore
produces the same name, and the lifecycle updates the open alert instead of raising another. The
state holds 42 days of history, so in an episode longer than that the first triggers age out and the
name moves on: such rules pass their gap as ``continues_within``, and the lifecycle keeps updating
the episode's alert (``alerts.PatientAlerts``) instead of raising one for each new name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo

from iopcare.contract import Severity, Tier
from iopcare.domain.engagement import CheckInRecord
from iopcare.domain.rules.pack import Rule
from iopcare.domain.rules.wording import day, fit
from iopcare.domain.signals import Clearance, FactValue, Finding, Signal

# The alert contract's limits (contract/alerts.py).
MAX_TITLE = 200
MAX_EXPLANATION = 1000
MAX_ACTION = 500
MAX_EVENT_IDS = 50
MAX_FACTS = 50
MAX_FACT_TEXT = 200


def signal(
    rule_id: str,
    rule: Rule,
    *,
    severity: Severity,
    episode: str,
    title: str,
    explanation: str,
    action: str,
    at: datetime,
    event_ids: Iterable[str] = (),
    facts: Mapping[str, FactValue] | None = None,
    supersedes: Sequence[str] = (),
    continues_within: timedelta | None = None,
    tier: Tier | None = None,
) -> Signal:
    """A rule's signal, cut to the contract's limits; the pack's wording of the action wins."""
    kept: dict[str, FactValue] = {}
    for name, value in (facts or {}).items():
        if len(kept) == MAX_FACTS:
            break
        kept[name] = fit(value, MAX_FACT_TEXT) if isinstance(value, str) else value
    return Signal(
        rule_id=rule_id,
        rule_version=rule.version,
        severity=severity,
        episode=episode,
        title=fit(title, MAX_TITLE),
        explanation=fit(explanation, MAX_EXPLANATION),
        recommended_action=fit(rule.recommended_action or action, MAX_ACTION),
        at=at,
        event_ids=tuple(dict.fromkeys(event_ids))[:MAX_EVENT_IDS],
        facts=kept,
        supersedes=tuple(supersedes),
        continues_within=continues_within,
        tier=tier,
    )


def clearance(
    rule_id: str,
    reason: str,
    at: datetime,
    episode: str | None = None,
    continues_within: timedelta | None = None,
) -> Clearance:
    return Clearance(
        rule_id=rule_id,
        reason=fit(reason, MAX_EXPLANATION),
        at=at,
        episode=episode,
        continues_within=continues_within,
    )


def chain_start(times: Sequence[datetime], index: int, gap: timedelta) -> int:
    """Index of the first trigger of the episode that the trigger at ``times[index]`` belongs to.

    ``times`` are the triggers' times in order; walking back, the episode goes on while each trigger
    follows the one before it within ``gap``.
    """
    while index > 0 and times[index] - times[index - 1] <= gap:
        index -= 1
    return index


def checkin_index(checkins: Sequence[CheckInRecord], event_id: str) -> int:
    """Position of a check-in in time order (usually the last), or -1 if the state no longer has it."""
    for index in range(len(checkins) - 1, -1, -1):
        if checkins[index].event_id == event_id:
            return index
    return -1


def checkin_episode_over(
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
    last = last_of_ended_checkin_episode(checkins, index, gap, trigger)
    if last is None:
        return []
    current = checkins[index]
    return [
        clearance(
            rule_id,
            f"no {no_more} for over {gap.days} days since {day(checkins[last].at, zone)} "
            f"(craving {current.craving} on {day(current.at, zone)})",
            current.at,
            checkins[first_of_checkin_episode(checkins, last, gap, trigger)].event_id,
            continues_within=gap,
        )
    ]


def first_of_checkin_episode(
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


def last_of_ended_checkin_episode(
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

"""Mood: low against the patient's own usual range, sustained over the last check-ins.

Low mood comes before a lapse as often as craving does, and in a patient whose mood is usually 7 a
run of 4s is news where in another it is not: the rule judges the last ``sustained_checkins``
check-ins against the median and spread of the ``baseline_days`` before (baseline.py). Until there
is a baseline only a floor (``at_most_without_baseline``) alerts. Episodes chain as craving's do.
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
from iopcare.domain.rules.pack import MoodLow, RulePack
from iopcare.domain.rules.wording import day, listing
from iopcare.domain.signals import FactValue, Finding

MOOD_ACTION = (
    "Ask the patient about their mood within a day (and about safety); review the coping plan and "
    "consider an extra individual session."
)


def _mood(c: CheckInRecord) -> int:
    return c.mood


def mood_low(state: PatientState, event: CheckInSubmitted, pack: RulePack) -> list[Finding]:
    """Mood below the patient's own usual range on the last check-ins (see ``MoodLow``)."""
    rule = pack.rules.mood_low
    checkins = state.checkins
    index = checkin_index(checkins, event.id)
    if index < 0:
        return []

    @functools.cache
    def judge(k: int) -> tuple[bool, UsualRange | None]:
        return sustained_against_usual(
            checkins,
            k,
            _mood,
            sustained=rule.sustained_checkins,
            days=rule.baseline_days,
            min_checkins=rule.baseline_min_checkins,
            beyond=lambda usual, mood: mood <= _bar(usual, rule),
            without_baseline=lambda k: _without_baseline(checkins, k, rule),
        )

    def low(k: int) -> bool:
        return judge(k)[0]

    zone = pack.program_calendar.zone
    findings = checkin_episode_over(
        "mood_low", checkins, index, rule.gap, low, "mood below the usual range", zone
    )
    if not low(index):
        return findings
    usual = judge(index)[1]
    window = checkins[index - rule.sustained_checkins + 1 : index + 1]
    moods = listing([f"{c.mood} on {day(c.at, zone)}" for c in window])
    if usual is not None:
        compared = (
            f"over the {rule.baseline_days} days before, mood was {usual.words()} (median "
            f"{usual.median:g}, {usual.checkins} check-ins)"
        )
        facts: dict[str, FactValue] = {
            "mood_last": window[-1].mood,
            "usual_median": usual.median,
            "usual_low": usual.low,
            "usual_high": usual.high,
            "usual_spread": usual.spread,
            "baseline_checkins": usual.checkins,
            "threshold": _bar(usual, rule),
        }
    else:
        compared = (
            f"there are not yet {rule.baseline_min_checkins} check-ins in {rule.baseline_days} days for "
            f"the patient's own range, and {rule.at_most_without_baseline} or less is low for anyone"
        )
        facts = {"mood_last": window[-1].mood, "threshold": rule.at_most_without_baseline}
    findings.append(
        signal(
            "mood_low",
            rule,
            severity=rule.severity,
            episode=checkins[first_of_checkin_episode(checkins, index, rule.gap, low)].event_id,
            title=f"Mood below the usual range: {listing([str(c.mood) for c in window])}",
            explanation=(
                f"Mood {moods} (0-10), {'each ' if len(window) > 1 else ''}below the patient's usual: "
                f"{compared}. Low mood, like craving, often comes before a lapse."
            ),
            action=MOOD_ACTION,
            at=event.time,
            continues_within=rule.gap,
            event_ids=[c.event_id for c in reversed(window)],
            facts={**facts, "sustained_checkins": len(window)},
        )
    )
    return findings


def _bar(usual: UsualRange, rule: MoodLow) -> int:
    margin = max(rule.below_usual_by, rule.spread_multiplier * usual.spread)
    return min(rule.at_most, math.floor(usual.median - margin))


def _without_baseline(checkins: list[CheckInRecord], k: int, rule: MoodLow) -> bool:
    """No baseline yet: the run is low for anyone (at most ``at_most_without_baseline``)."""
    run = checkins[k - rule.sustained_checkins + 1 : k + 1]
    return all(c.mood <= rule.at_most_without_baseline for c in run)

"""Use: the patient reports use, or a toxicology screen finds a substance that is not prescribed.

Repeated evidence of one lapse is one alert: use signals of a kind no more than ``episode_gap_days``
apart are one episode, named after the first. These alerts are not cleared automatically: a
counselor closes a lapse after talking it through. A step-up recommendation supersedes them.
"""

from __future__ import annotations

from datetime import timedelta

from iopcare.contract import CheckInSubmitted, ToxicologyResulted
from iopcare.domain.engagement import PatientState, UseSignal, UseSignalKind
from iopcare.domain.rules.evidence import chain_start, signal
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.rules.wording import day, day_time, listing, ordinal
from iopcare.domain.signals import Finding

REPORTED_USE_ACTION = (
    "Talk with the patient within the day: what was used, when, and what led to it; review the "
    "relapse-prevention plan and consider a toxicology screen."
)
POSITIVE_SCREEN_ACTION = (
    "Discuss the result with the patient within the day, review medications and the relapse-prevention "
    "plan, and consider a confirmation test if the patient disputes it."
)
INTAKE_DAYS = 3  # a screen collected this close to the program start is the intake screen


def _episode(state: PatientState, kind: UseSignalKind, event_id: str, gap: timedelta) -> list[UseSignal]:
    """The signals of ``kind`` in the episode of ``event_id``'s signal, up to it (empty if the state
    no longer holds it)."""
    signals = [u for u in state.use_signals if u.kind == kind]
    index = next((i for i, u in enumerate(signals) if u.event_id == event_id), -1)
    if index < 0:
        return []
    return signals[chain_start([u.at for u in signals], index, gap) : index + 1]


def reported_use(state: PatientState, event: CheckInSubmitted, pack: RulePack) -> list[Finding]:
    """The check-in reports substance use."""
    rule = pack.rules.reported_use
    if not event.data.substance_use_reported:
        return []
    episode = _episode(state, "reported_use", event.id, rule.gap)
    if not episode:
        return []  # older than the state remembers
    zone = pack.program_calendar.zone
    when = day_time(event.time, zone)
    repeat = (
        f" It is the {ordinal(len(episode))} report of this lapse, which began on {day(episode[0].at, zone)} "
        f"(reports no more than {rule.episode_gap_days} days apart count as one lapse)."
        if len(episode) > 1
        else ""
    )
    return [
        signal(
            "reported_use",
            rule,
            severity=rule.severity,
            episode=episode[0].event_id,
            title=f"Substance use reported at the check-in of {day(event.time, zone)}",
            explanation=f"The patient reported substance use at the check-in of {when}.{repeat}",
            action=REPORTED_USE_ACTION,
            at=event.time,
            event_ids=[u.event_id for u in reversed(episode)],
            continues_within=rule.gap,
            facts={
                "reports_in_episode": len(episode),
                "episode_gap_days": rule.episode_gap_days,
                "episode_since": episode[0].at.isoformat(),
                "craving": event.data.craving,
            },
        )
    ]


def positive_screen(state: PatientState, event: ToxicologyResulted, pack: RulePack) -> list[Finding]:
    """The screen is positive for a substance the patient is not prescribed."""
    rule = pack.rules.positive_screen
    result = event.data
    unexpected = sorted(result.unexpected_positives())
    if not unexpected:
        return []
    episode = _episode(state, "positive_screen", event.id, rule.gap)
    if not episode:
        return []
    zone = pack.program_calendar.zone
    prescribed = sorted(result.prescribed_substances)
    found = listing(unexpected)
    text = (
        f"The {'random ' if result.random else ''}screen collected on "
        f"{day_time(result.collected_at, zone)} was positive for {found}, which the patient is not prescribed"
    )
    if prescribed:
        text += f" ({listing(prescribed)} is prescribed and expected)"
    text += "."
    enrollment = state.enrollment
    at_intake = (
        enrollment is not None
        and (result.collected_at.astimezone(zone).date() - enrollment.program_start).days < INTAKE_DAYS
    )
    if at_intake:
        text += " A positive screen at intake roughly halves the chance of completing treatment."
    if len(episode) > 1:
        text += f" It is the {ordinal(len(episode))} positive screen since {day(episode[0].at, zone)}."
    return [
        signal(
            "positive_screen",
            rule,
            severity=rule.severity,
            episode=episode[0].event_id,
            title=f"Positive toxicology screen: {found}",
            explanation=text,
            action=POSITIVE_SCREEN_ACTION,
            at=event.time,
            event_ids=[u.event_id for u in reversed(episode)],
            continues_within=rule.gap,
            facts={
                "substances": ",".join(unexpected),
                "prescribed": ",".join(prescribed),
                "collected_at": result.collected_at.isoformat(),
                "random": result.random,
                "at_intake": at_intake,
                "positive_screens_in_episode": len(episode),
                "episode_gap_days": rule.episode_gap_days,
            },
        )
    ]

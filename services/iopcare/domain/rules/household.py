"""The recovery environment: sober-living house reports and family therapy (ASAM dimension 6).

Both come from third parties and reach the state only while the patient's Part 2 consent for that
party is active (``intake.consent_gate``); a held report raises nothing until it is released.
"""

from __future__ import annotations

from datetime import datetime

from iopcare.contract import (
    FamilyTherapyBooked,
    FamilyTherapyCancelled,
    FamilyTherapyNoShow,
    SessionScheduled,
    SoberLivingReported,
)
from iopcare.domain.engagement import FamilyBooking, PatientState
from iopcare.domain.rules.evidence import chain_start, clearance, signal
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.rules.wording import day, day_time, listing
from iopcare.domain.signals import Finding

# What each house report means to the counselor: (title, what it says, recommended action).
_HOUSE_REPORTS: dict[str, tuple[str, str, str]] = {
    "positive_test": (
        "Positive drug test at the sober-living house",
        "It counts as a use signal (relapse/continued-use potential, ASAM dimension 5).",
        "Talk with the patient within the day about the result and coordinate with the house manager "
        "(within the consent) on a safe plan for staying.",
    ),
    "curfew_violation": (
        "Curfew violation at the sober-living house",
        "House rule breaks can precede a lapse.",
        "Ask about it at the next session: what happened that night, and any triggers.",
    ),
    "missed_house_meeting": (
        "Missed house meeting at the sober-living house",
        "House rule breaks can precede a lapse.",
        "Ask about it at the next session.",
    ),
    "conflict": (
        "Conflict at the sober-living house",
        "Conflict at home strains the recovery environment.",
        "Ask about it at the next session.",
    ),
    "left": (
        "Left the sober-living house (housing instability)",
        "Losing recovery housing weakens the recovery environment (ASAM dimension 6).",
        "Contact the patient today: where are they staying, is it safe and substance-free? Help with "
        "housing options.",
    ),
    "evicted": (
        "Evicted from the sober-living house (housing instability)",
        "Losing recovery housing weakens the recovery environment (ASAM dimension 6).",
        "Contact the patient today: where are they staying, is it safe and substance-free? Help with "
        "housing options and reassess the level of care.",
    ),
    "compliant_week": (
        "Compliant week at the sober-living house",
        "",
        "No action needed.",
    ),
}
_WORDS = {
    "positive_test": "a positive drug test",
    "curfew_violation": "a curfew violation",
    "missed_house_meeting": "a missed house meeting",
    "conflict": "a conflict",
    "left": "that the patient left the house",
    "evicted": "that the patient was evicted",
    "compliant_week": "a compliant week",
}
FAMILY_ACTION = (
    "Ask the patient and family what got in the way and rebook; family involvement is one of the three "
    "prongs of IOP."
)
NOT_BOOKED_ACTION = "Discuss family therapy with the patient and book a first appointment."


def sober_living_incident(state: PatientState, event: SoberLivingReported, pack: RulePack) -> list[Finding]:
    """A house report of a kind the pack lists, at that kind's severity. One episode per house, kind
    and day (a house reporting the same night twice is one alert)."""
    rule = pack.rules.sober_living_incident
    report = event.data
    severity = rule.severity_by_kind.get(report.kind)
    if severity is None or not any(h.event_id == event.id for h in reversed(state.house_incidents)):
        return []  # not alerting, or held by the consent gate
    zone = pack.program_calendar.zone
    title, meaning, action = _HOUSE_REPORTS[report.kind]
    local_day = report.observed_at.astimezone(zone).date().isoformat()
    return [
        signal(
            "sober_living_incident",
            rule,
            severity=severity,
            episode=f"{report.house_id}:{report.kind}:{local_day}",
            title=title,
            explanation=(
                f"House {report.house_id} reported {_WORDS[report.kind]}, observed on "
                f"{day_time(report.observed_at, zone)}. {meaning}"
            ).strip(),
            action=action,
            at=event.time,
            event_ids=[event.id],
            facts={
                "house_id": report.house_id,
                "kind": report.kind,
                "observed_at": report.observed_at.isoformat(),
                "housing_instability": report.kind in ("left", "evicted"),
            },
            tier=rule.tier_of(report.kind),
        )
    ]


def _booking(state: PatientState, booking_id: str, event_id: str, status: str) -> FamilyBooking | None:
    booking = state.family_bookings.get(booking_id)
    if booking is None or booking.event_id != event_id or booking.status != status:
        return None  # held by the consent gate, or overridden by a later correction
    return booking


def family_no_show(state: PatientState, event: FamilyTherapyNoShow, pack: RulePack) -> list[Finding]:
    """Nobody came to a family-therapy appointment. One episode per appointment."""
    rule = pack.rules.family_no_show
    booking = _booking(state, event.data.booking_id, event.id, "no_show")
    if booking is None:
        return []
    when = day_time(booking.starts_at, pack.program_calendar.zone)
    return [
        signal(
            "family_no_show",
            rule,
            severity=rule.severity,
            episode=booking.booking_id,
            title=f"Family therapy no-show on {day(booking.starts_at, pack.program_calendar.zone)}",
            explanation=(
                f"Nobody came to the family-therapy appointment of {when} with {booking.provider_id}."
            ),
            action=FAMILY_ACTION,
            at=event.time,
            event_ids=[event.id],
            facts={"booking_id": booking.booking_id, "starts_at": booking.starts_at.isoformat()},
        )
    ]


def family_cancellations(state: PatientState, event: FamilyTherapyCancelled, pack: RulePack) -> list[Finding]:
    """``cancellations`` (2) family-therapy cancellations by the patient or family in ``days`` (30).
    Cancellations that keep the pattern going (each within ``days`` of the previous) are one episode."""
    rule = pack.rules.family_cancellations
    booking = _booking(state, event.data.booking_id, event.id, "cancelled")
    if booking is None or booking.cancelled_by not in rule.cancelled_by:
        return []
    window = rule.window
    cancelled = sorted(
        (
            b
            for b in state.family_bookings.values()
            if b.status == "cancelled" and b.cancelled_by in rule.cancelled_by
        ),
        key=lambda b: (b.decided_at, b.booking_id),
    )
    index = next(i for i, b in enumerate(cancelled) if b.booking_id == booking.booking_id)
    in_window = [b for b in cancelled[: index + 1] if booking.decided_at - b.decided_at <= window]
    if len(in_window) < rule.cancellations:
        return []
    triggers = [
        b
        for i, b in enumerate(cancelled[: index + 1])
        if sum(1 for c in cancelled[: i + 1] if b.decided_at - c.decided_at <= window) >= rule.cancellations
    ]
    first = triggers[chain_start([b.decided_at for b in triggers], len(triggers) - 1, window)]
    zone = pack.program_calendar.zone
    return [
        signal(
            "family_cancellations",
            rule,
            severity=rule.severity,
            episode=first.booking_id,
            title=f"{len(in_window)} family-therapy cancellations in {rule.days} days",
            explanation=(
                f"{len(in_window)} family-therapy appointments cancelled in {rule.days} days: "
                + listing([f"{day(b.starts_at, zone)} (by the {b.cancelled_by})" for b in in_window])
                + f" (the threshold is {rule.cancellations})."
            ),
            action=FAMILY_ACTION,
            at=event.time,
            event_ids=[b.event_id for b in reversed(in_window)],
            continues_within=window,
            facts={
                "cancellations": len(in_window),
                "threshold": rule.cancellations,
                "window_days": rule.days,
            },
        )
    ]


def _family_started(state: PatientState) -> bool:
    return bool(state.family_bookings) or any(s.kind == "family" for s in state.sessions.values())


def family_not_booked_due(state: PatientState, pack: RulePack) -> datetime | None:
    """When the "none booked by day 21" check falls due (program start + ``by_day`` days, local)."""
    if state.enrollment is None:
        return None
    start, _ = pack.program_calendar.week_bounds(state.enrollment.program_start, 1)
    return start + pack.rules.family_not_booked.due_after


def family_not_booked(state: PatientState, due_at: datetime, pack: RulePack) -> list[Finding]:
    """No family therapy booked (with an outside provider or in-house) by program day ``by_day``."""
    rule = pack.rules.family_not_booked
    enrollment = state.enrollment
    if enrollment is None or _family_started(state):
        return []
    return [
        signal(
            "family_not_booked",
            rule,
            severity=rule.severity,
            episode=f"program-{enrollment.program_start.isoformat()}",
            title=f"No family therapy booked by day {rule.by_day}",
            explanation=(
                f"No family-therapy appointment has been booked {rule.by_day} days into the program, which "
                f"started on {day(enrollment.program_start, pack.program_calendar.zone)}."
            ),
            action=NOT_BOOKED_ACTION,
            at=due_at,
            event_ids=[enrollment.event_id],
            facts={"by_day": rule.by_day, "program_start": enrollment.program_start.isoformat()},
        )
    ]


def family_booked(
    state: PatientState, event: FamilyTherapyBooked | SessionScheduled, pack: RulePack
) -> list[Finding]:
    """The first family-therapy booking after the day-21 check clears it."""
    if isinstance(event, SessionScheduled):
        if event.data.kind != "family" or state.family_bookings:
            return []  # most schedules are groups; or family therapy was booked before
    elif len(state.family_bookings) != 1:
        return []  # not the first booking (or this one is held by the consent gate)
    if len(state.family_bookings) + sum(1 for s in state.sessions.values() if s.kind == "family") != 1:
        return []
    due = family_not_booked_due(state, pack)
    if due is None or event.time < due:
        return []
    assert state.enrollment is not None
    return [
        clearance(
            "family_not_booked",
            f"family therapy booked on {day(event.time, pack.program_calendar.zone)}",
            event.time,
            f"program-{state.enrollment.program_start.isoformat()}",
        )
    ]

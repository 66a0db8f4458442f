"""How an event enters a patient's state: the Part 2 consent gate, then the fold. Pure.

Sober-living houses and outside family-therapy providers are third parties: 42 CFR Part 2 lets the
program use what they report only while the patient's written consent for *that* party is active
and covers that kind of information (docs/rules.md). A report that is not covered is not applied; it
is *held* (the processor keeps it in the ``quarantined_events`` table with the reason), never
dropped. Consent paperwork often lags the first report by a few days, so a held report is released
and applied if a grant covering it arrives within ``Tuning.consent_hold`` of the report.

Order-insensitive like the fold itself: a report is admitted when the consent history covers it at
its own time, or a grant made within the hold window after it does. So "grant then report" and
"report then grant" end in the same state. A revocation is not retroactive: a report applied while
consent was active stays applied (Part 2 does not undo lawful disclosures), which also means a
revocation that arrives *after* a report it predates does not retract that report.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from iopcare.contract import (
    ConsentGranted,
    FamilyTherapyAttended,
    FamilyTherapyBooked,
    FamilyTherapyCancelled,
    FamilyTherapyNoShow,
    InboundEvent,
    SoberLivingReported,
)
from iopcare.domain.engagement import DEFAULT_TUNING, PatientState, Tuning, apply_event, consent_key

QuarantineReason = Literal["no_consent", "consent_expired", "consent_revoked", "outside_scope"]


@dataclass(frozen=True)
class ThirdParty:
    """Who reported an event, as the consent registry names them, and what the report discloses."""

    kind: Literal["sober_living_house", "family_therapy_provider"]
    id: str
    needs: frozenset[str]  # consent scopes the report falls under


_FAMILY = (FamilyTherapyBooked, FamilyTherapyCancelled, FamilyTherapyAttended, FamilyTherapyNoShow)


def third_party_of(event: InboundEvent) -> ThirdParty | None:
    """The third party behind an event, or None for the program's own records."""
    if isinstance(event, SoberLivingReported):
        needs = {"housing"}
        if event.data.kind == "positive_test":
            needs.add("toxicology")  # a house's drug test result is toxicology information too
        return ThirdParty("sober_living_house", event.data.house_id, frozenset(needs))
    if isinstance(event, _FAMILY):
        return ThirdParty("family_therapy_provider", event.data.provider_id, frozenset({"attendance"}))
    return None


@dataclass(frozen=True)
class Held:
    """A third-party event kept out of the state until the patient's consent covers it."""

    event: InboundEvent
    party: ThirdParty
    reason: QuarantineReason
    hold_until: datetime  # a grant made after this can no longer release it


def consent_gate(state: PatientState, event: InboundEvent, tuning: Tuning = DEFAULT_TUNING) -> Held | None:
    """None when the event may be applied; otherwise why it is held."""
    party = third_party_of(event)
    if party is None:
        return None
    hold_until = event.time + tuning.consent_hold
    consent = state.consents.get(consent_key(party.kind, party.id))
    if consent is not None:
        if consent.active_at(event.time, party.needs):
            return None
        grants_in_window = (d.at for d in consent.decisions if d.granted and event.time < d.at <= hold_until)
        if any(consent.active_at(at, party.needs) for at in grants_in_window):
            return None  # the paperwork caught up with the report
    return Held(event, party, _reason(state, party, event.time), hold_until)


def _reason(state: PatientState, party: ThirdParty, when: datetime) -> QuarantineReason:
    consent = state.consents.get(consent_key(party.kind, party.id))
    if consent is None or not any(d.granted and d.at <= when for d in consent.decisions):
        return "no_consent"
    latest_grant = [d for d in consent.decisions if d.granted and d.at <= when][-1]
    if latest_grant.expires_at is not None and latest_grant.expires_at <= when:
        return "consent_expired"
    if not consent.scope_at(when):
        return "consent_revoked"
    return "outside_scope"


@dataclass
class Intake:
    """What taking in one event did to a patient's state."""

    applied: list[InboundEvent] = field(default_factory=list)  # the event and any it released
    late: int = 0
    held: Held | None = None
    released: list[Held] = field(default_factory=list)


def take_in(
    state: PatientState, event: InboundEvent, waiting: Iterable[Held] = (), tuning: Tuning = DEFAULT_TUNING
) -> Intake:
    """Gate and fold one event into ``state`` (in place). ``waiting`` is the patient's held events;
    a consent grant releases those it now covers, in event-time order. The caller moves ``held``
    into, and ``released`` out of, its quarantine."""
    held = consent_gate(state, event, tuning)
    if held is not None:
        return Intake(held=held)
    intake = Intake(applied=[event], late=int(apply_event(state, event, tuning)))
    if isinstance(event, ConsentGranted):
        party = (event.data.recipient_kind, event.data.recipient_id)
        for candidate in sorted(waiting, key=lambda h: (h.event.time, h.event.id)):
            if (candidate.party.kind, candidate.party.id) != party:
                continue
            if consent_gate(state, candidate.event, tuning) is None:
                intake.late += int(apply_event(state, candidate.event, tuning))
                intake.applied.append(candidate.event)
                intake.released.append(candidate)
    return intake


def replay(
    events: Iterable[InboundEvent],
    tuning: Tuning = DEFAULT_TUNING,
    quarantine: dict[str, list[Held]] | None = None,
) -> dict[str, PatientState]:
    """Take in events (each once) per patient, offline: what the processor converges to. Pass a
    dict as ``quarantine`` to see the events still held at the end, by patient."""
    states: dict[str, PatientState] = {}
    held: dict[str, list[Held]] = {} if quarantine is None else quarantine
    for event in events:
        state = states.get(event.subject)
        if state is None:
            state = states[event.subject] = PatientState(patient_id=event.subject)
        waiting = held.get(event.subject, [])
        intake = take_in(state, event, waiting, tuning)
        if intake.held is not None:
            held.setdefault(event.subject, []).append(intake.held)
        for released in intake.released:
            waiting.remove(released)
    for patient_id in [p for p, waiting in held.items() if not waiting]:
        del held[patient_id]
    return states


__all__ = [
    "Held",
    "Intake",
    "QuarantineReason",
    "ThirdParty",
    "consent_gate",
    "replay",
    "take_in",
    "third_party_of",
]

"""What rules say about a patient: a :class:`Signal` (raise or refresh an alert) or a :class:`Clearance`
(the condition behind an alert no longer holds). Pure data; the alert lifecycle decides what a signal
does to the patient's alerts (create, update, inhibit, supersede), the rules only observe.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from iopcare.contract import Severity, Tier

FactValue = str | int | float | bool | None

SEVERITY_RANK: dict[Severity, int] = {"critical": 0, "high": 1, "medium": 2, "low": 3, "info": 4}
"""Most urgent first: a lower rank outranks (and can inhibit) a higher one."""


@dataclass(frozen=True)
class Signal:
    """One rule's finding about one patient, with everything a counselor needs to act on it.

    ``episode`` names the occurrence within the rule (the first miss of a run of misses, the week
    that closed short): the alert's dedup key is patient + rule + episode, so a repeat trigger in the
    same episode updates the open alert instead of raising another.
    """

    rule_id: str
    rule_version: str
    severity: Severity
    episode: str
    title: str  # one line
    explanation: str  # plain language, with the dates and numbers compared
    recommended_action: str
    at: datetime  # event time of the observation
    event_ids: tuple[str, ...] = ()
    facts: Mapping[str, FactValue] = field(default_factory=dict)  # values and thresholds compared
    # Rule ids whose open alerts this signal summarizes (a step-up recommendation supersedes the
    # engagement alerts behind it); the lifecycle resolves those with a reason.
    supersedes: tuple[str, ...] = ()
    # For a rule whose episodes are chains of triggers no more than a gap apart: the gap. The rule
    # names the episode after the first trigger the patient's state still holds; once the first
    # ones have aged out of that history the name moves on, but the episode has not ended: the
    # lifecycle continues the rule's live alert whose triggers are within this gap of this one.
    continues_within: timedelta | None = None
    # How this alert reaches the counselor when it is not the rule's tier (a minor house report
    # goes to the digest, a positive test at the house to the inbox): None for the rule's own.
    tier: Tier | None = None

    def dedup_key(self, patient_id: str) -> str:
        return f"{patient_id}:{self.rule_id}:{self.episode}"


@dataclass(frozen=True)
class Clearance:
    """The condition behind a rule's alerts cleared (attendance back on plan): resolve them."""

    rule_id: str
    reason: str  # plain language, e.g. "attended group on Thu 6 Mar: the run of misses ended"
    at: datetime
    episode: str | None = None  # None: every open episode of the rule
    # As on Signal: a chained rule's gap. Any live alert of the rule whose last trigger is more
    # than this before the clearance has ended as well, whatever the episode's name became.
    continues_within: timedelta | None = None


Finding = Signal | Clearance

__all__ = ["SEVERITY_RANK", "Clearance", "FactValue", "Finding", "Signal"]

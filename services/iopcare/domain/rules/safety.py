"""Safety: a check-in that asks for a same-day safety review. The one critical rule."""

from __future__ import annotations

from iopcare.contract import CheckInSubmitted
from iopcare.domain.engagement import PatientState
from iopcare.domain.rules.evidence import signal
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.rules.wording import day_time, listing
from iopcare.domain.signals import Finding

ACTION = (
    "Contact the patient today for a safety review: go through the safety plan, assess suicide risk "
    "(C-SSRS), and involve the on-call clinician at once if the risk is imminent."
)


def safety(state: PatientState, event: CheckInSubmitted, pack: RulePack) -> list[Finding]:
    """A check-in reports a safety concern, endorses PHQ-9 item 9 (thoughts of self-harm), or has a
    positive C-SSRS screener. Each such check-in is its own episode: a new endorsement always alerts,
    even after an earlier one was reviewed and resolved."""
    rule = pack.rules.safety
    answers = event.data
    reasons: list[str] = []
    if rule.safety_concern and answers.safety_concern:
        reasons.append("reported feeling unsafe")
    item9 = answers.phq9_item9
    if item9 is not None and item9 >= rule.phq9_item9_at_least:
        reasons.append(f"answered {item9} of 3 on PHQ-9 item 9 (thoughts of self-harm)")
    if rule.cssrs_positive and answers.cssrs_positive:
        reasons.append("screened positive on the C-SSRS suicide-risk screener")
    if not reasons:
        return []
    when = day_time(event.time, pack.program_calendar.zone)
    return [
        signal(
            "safety",
            rule,
            severity=rule.severity,
            episode=event.id,
            title=f"Safety concern at the check-in of {when}",
            explanation=(
                f"At the check-in of {when} the patient {listing(reasons)}. A same-day safety review is "
                f"needed (a PHQ-9 item 9 answer of {rule.phq9_item9_at_least} or more counts)."
            ),
            action=ACTION,
            at=event.time,
            event_ids=[event.id],
            facts={
                "safety_concern": answers.safety_concern,
                "phq9_item9": item9,
                "phq9_item9_threshold": rule.phq9_item9_at_least,
                "cssrs_positive": answers.cssrs_positive,
                "checkin_at": event.time.isoformat(),
            },
        )
    ]

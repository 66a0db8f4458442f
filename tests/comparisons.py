"""Readable comparisons for the exactness tests (the integration tests and the reliability suite)."""

from __future__ import annotations

import dataclasses

from iopcare.domain.engagement import PatientState

# Alert columns compared between the live processor and the offline backtest; raised_at and the
# escalation times follow from these on the stream clock.
ALERT_FIELDS = (
    "rule_id",
    "severity",
    "state",
    "occurrences",
    "escalated",
    "first_seen_at",
    "last_seen_at",
    "raised_at",
    "title",
    "explanation",
)


def state_differences(actual: dict[str, PatientState], expected: dict[str, PatientState]) -> list[str]:
    """Per patient, the state fields that differ (readable where a 20k-event dict diff is not)."""
    found: list[str] = []
    for patient in sorted(actual.keys() | expected.keys()):
        mine, theirs = actual.get(patient), expected.get(patient)
        if mine is None or theirs is None:
            found.append(f"{patient}: {'missing' if mine is None else 'not in the replay'}")
            continue
        fields = [
            f.name for f in dataclasses.fields(theirs) if getattr(mine, f.name) != getattr(theirs, f.name)
        ]
        if fields:
            found.append(f"{patient}: {', '.join(fields)}")
    return found

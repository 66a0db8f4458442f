"""The counselors' verdict on the alerts (iopcare.evaluation.acknowledgements): precision and
override rate per rule from the acknowledgement outcomes, time to acknowledge, and which rules are
candidates to demote a tier (never one that always pages)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from iopcare.contract import AcknowledgementOutcome, Tier
from iopcare.evaluation.acknowledgements import AcknowledgementRecord, overall, verdicts

UNTIL = datetime(2026, 6, 1, tzinfo=UTC)


def _records(
    rule_id: str, tier: Tier, outcomes: list[AcknowledgementOutcome | None], *, days_ago: int = 5
) -> list[AcknowledgementRecord]:
    raised = UNTIL - timedelta(days=days_ago)
    return [
        AcknowledgementRecord(
            rule_id, tier, raised, raised + timedelta(hours=n + 1) if o is not None else None, o
        )
        for n, o in enumerate(outcomes)
    ]


def test_precision_and_override_rate_count_only_the_alerts_with_an_outcome() -> None:
    records = _records("silence", "inbox", ["contacted_patient", "changed_plan", "false_alarm", None])
    (verdict,) = verdicts(records, until=UNTIL)
    assert verdict.alerts == 4 and verdict.acknowledged == 3 and verdict.with_outcome == 3
    assert verdict.precision == pytest.approx(2 / 3) and verdict.override_rate == pytest.approx(1 / 3)
    assert verdict.median_hours_to_acknowledge == 2.0
    assert verdict.demote_to is None  # too few outcomes to judge


def test_a_rule_overridden_most_of_the_time_overall_and_lately_is_a_candidate_to_demote() -> None:
    often = ["no_action_needed"] * 8 + ["false_alarm"] * 4 + ["contacted_patient"] * 3
    records = _records("missed_often", "page", often) + _records("silence", "inbox", often)
    found = {v.rule_id: v for v in verdicts(records, until=UNTIL)}
    assert found["missed_often"].override_rate == pytest.approx(0.8)
    assert found["missed_often"].demote_to == "inbox" and found["silence"].demote_to == "digest"
    totals = overall(list(found.values()))
    assert totals["all"]["with_outcome"] == 30 and totals["page"]["override_rate"] == pytest.approx(0.8)


def test_an_override_rate_that_fell_lately_does_not_demote_and_safety_never_does() -> None:
    old = _records("missed_often", "page", ["false_alarm"] * 20, days_ago=60)
    recent = _records("missed_often", "page", ["contacted_patient"] * 12, days_ago=3)
    (verdict,) = verdicts(old + recent, until=UNTIL)
    assert verdict.override_rate == pytest.approx(20 / 32) and verdict.recent_override_rate == 0.0
    assert verdict.demote_to is None
    (safety,) = verdicts(_records("safety", "page", ["false_alarm"] * 30), until=UNTIL)
    assert safety.override_rate == 1.0 and safety.demote_to is None
    (digest,) = verdicts(_records("family_no_show", "digest", ["false_alarm"] * 30), until=UNTIL)
    assert digest.demote_to is None  # nothing below the digest


def test_alerts_raised_after_the_period_are_left_out() -> None:
    later = _records("silence", "inbox", ["false_alarm"], days_ago=-2)
    assert verdicts(later, until=UNTIL) == []

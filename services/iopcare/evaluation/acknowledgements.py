"""The counselors' own verdict on the alerts: precision, override rate and time to acknowledge, per
rule. Pure: acknowledgement records in, measures out (``store/acknowledgements.py`` reads them).

When acknowledging, a counselor may record what they did: *contacted the patient* or *changed the
plan* (the alert was worth their time), *no action needed* or *false alarm* (an **override**, as
hospitals count overridden decision-support alerts). Per rule, over a period:

- **precision**: contacted + changed the plan, over the alerts with an outcome;
- **override rate**: no action needed + false alarm, over the same (1 - precision);
- **time to acknowledge**: from raise to the first acknowledgement, median and 90th percentile;
- a rule whose override rate stays above ``DEMOTE_ABOVE`` (over the period and over its last
  ``RECENT_DAYS``, each with at least ``MIN_OUTCOMES`` outcomes) is a **candidate to demote** a
  tier (page to inbox, inbox to digest). Never the rules that always page (safety, reported use,
  positive screens): no override rate moves them.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from iopcare.contract import AcknowledgementOutcome, Tier
from iopcare.domain.rules.pack import ALWAYS_PAGE, TIERS

OVERRIDES: frozenset[AcknowledgementOutcome] = frozenset({"no_action_needed", "false_alarm"})
DEMOTE_ABOVE = 0.5
MIN_OUTCOMES = 10
RECENT_DAYS = 28
_LOWER: dict[Tier, Tier] = {"page": "inbox", "inbox": "digest"}


@dataclass(frozen=True)
class AcknowledgementRecord:
    """One alert as the counselors handled it."""

    rule_id: str
    tier: Tier
    raised_at: datetime
    acknowledged_at: datetime | None  # the first acknowledgement, if any
    outcome: AcknowledgementOutcome | None  # the latest outcome recorded, if any


@dataclass(frozen=True)
class RuleVerdict:
    """One rule's alerts over the period, as the counselors judged them."""

    rule_id: str
    tier: Tier
    alerts: int
    acknowledged: int
    outcomes: dict[AcknowledgementOutcome, int]
    median_hours_to_acknowledge: float | None
    p90_hours_to_acknowledge: float | None
    recent_override_rate: float | None  # over the last RECENT_DAYS of the period
    recent_outcomes: int

    @property
    def with_outcome(self) -> int:
        return sum(self.outcomes.values())

    @property
    def override_rate(self) -> float | None:
        if not self.with_outcome:
            return None
        return sum(n for outcome, n in self.outcomes.items() if outcome in OVERRIDES) / self.with_outcome

    @property
    def precision(self) -> float | None:
        rate = self.override_rate
        return None if rate is None else 1 - rate

    @property
    def demote_to(self) -> Tier | None:
        """The tier below, when the override rate stays above the line (never for a rule that
        always pages, nor below the digest)."""
        if self.rule_id in ALWAYS_PAGE or self.tier not in _LOWER:
            return None
        overall, recent = self.override_rate, self.recent_override_rate
        if overall is None or recent is None or self.with_outcome < MIN_OUTCOMES:
            return None
        if self.recent_outcomes < MIN_OUTCOMES:
            return None
        return _LOWER[self.tier] if overall > DEMOTE_ABOVE and recent > DEMOTE_ABOVE else None

    def summary(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "alerts": self.alerts,
            "acknowledged": self.acknowledged,
            "with_outcome": self.with_outcome,
            "outcomes": dict(sorted(self.outcomes.items())),
            "precision": self.precision,
            "override_rate": self.override_rate,
            "recent_override_rate": self.recent_override_rate,
            "median_hours_to_acknowledge": self.median_hours_to_acknowledge,
            "p90_hours_to_acknowledge": self.p90_hours_to_acknowledge,
            "demote_to": self.demote_to,
        }


def _hours(records: Iterable[AcknowledgementRecord]) -> list[float]:
    return sorted(
        (r.acknowledged_at - r.raised_at).total_seconds() / 3600
        for r in records
        if r.acknowledged_at is not None
    )


def _quantile(values: Sequence[float], share: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(share * 100) - 1]


def verdicts(records: Iterable[AcknowledgementRecord], *, until: datetime) -> list[RuleVerdict]:
    """Per rule (by id), the counselors' verdict on the alerts raised before ``until``; the recent
    override rate counts the alerts raised in the ``RECENT_DAYS`` before it."""
    by_rule: dict[str, list[AcknowledgementRecord]] = defaultdict(list)
    for record in records:
        if record.raised_at < until:
            by_rule[record.rule_id].append(record)
    recent_from = until - timedelta(days=RECENT_DAYS)
    result = []
    for rule_id, own in sorted(by_rule.items()):
        outcomes: dict[AcknowledgementOutcome, int] = defaultdict(int)
        for record in own:
            if record.outcome is not None:
                outcomes[record.outcome] += 1
        recent = [r.outcome for r in own if r.raised_at >= recent_from and r.outcome is not None]
        hours = _hours(own)
        result.append(
            RuleVerdict(
                rule_id=rule_id,
                tier=own[-1].tier,
                alerts=len(own),
                acknowledged=sum(1 for r in own if r.acknowledged_at is not None),
                outcomes=dict(outcomes),
                median_hours_to_acknowledge=statistics.median(hours) if hours else None,
                p90_hours_to_acknowledge=_quantile(hours, 0.9),
                recent_override_rate=(sum(o in OVERRIDES for o in recent) / len(recent)) if recent else None,
                recent_outcomes=len(recent),
            )
        )
    return result


def overall(found: Sequence[RuleVerdict]) -> dict[str, Any]:
    """The counselors' precision over every rule, and by tier."""

    def rate(subset: Sequence[RuleVerdict]) -> dict[str, Any]:
        judged = sum(v.with_outcome for v in subset)
        overridden = sum(n for v in subset for o, n in v.outcomes.items() if o in OVERRIDES)
        return {
            "alerts": sum(v.alerts for v in subset),
            "with_outcome": judged,
            "precision": (judged - overridden) / judged if judged else None,
            "override_rate": overridden / judged if judged else None,
        }

    return {"all": rate(found), **{tier: rate([v for v in found if v.tier == tier]) for tier in TIERS}}


__all__ = [
    "DEMOTE_ABOVE",
    "MIN_OUTCOMES",
    "OVERRIDES",
    "RECENT_DAYS",
    "AcknowledgementRecord",
    "RuleVerdict",
    "overall",
    "verdicts",
]

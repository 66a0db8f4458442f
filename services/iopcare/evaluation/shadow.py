"""A candidate rule pack beside the active one, over the same live period: what switching would
change, judged by what the counselors recorded. Pure: the two packs' alerts in, the shifts out.

Both packs decide on the same events (the period's event log, replayed by the same course the
processor runs: live and replay decide alike, tests/integration/test_live_equals_replay.py); an
alert is the same in both when its dedup key is (patient, rule, episode). Per rule:

- **kept**: raised by both; **dropped**: only by the active pack (switching removes it);
  **added**: only by the candidate (nobody has judged it: it never reached anyone);
- of the dropped alerts, how many the counselors acknowledged with an outcome and how many of those
  were overrides (no action needed, false alarm): dropping alerts counselors override is the point
  of a candidate, dropping ones they acted on is its cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from iopcare.contract import AcknowledgementOutcome, Tier
from iopcare.evaluation.acknowledgements import OVERRIDES


@dataclass(frozen=True)
class ShadowAlert:
    """An alert a pack raised (or would have) in the period."""

    dedup_key: str
    rule_id: str
    tier: Tier


@dataclass
class RuleShift:
    rule_id: str
    active: int = 0
    candidate: int = 0
    kept: int = 0
    dropped: int = 0
    added: int = 0
    dropped_judged: int = 0  # dropped alerts acknowledged with an outcome
    dropped_overridden: int = 0  # of them, overrides
    tiers: dict[str, str] = field(default_factory=dict)  # "active"/"candidate" -> tier

    def summary(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "candidate": self.candidate,
            "kept": self.kept,
            "dropped": self.dropped,
            "added": self.added,
            "dropped_judged": self.dropped_judged,
            "dropped_overridden": self.dropped_overridden,
            "tier": dict(self.tiers),
        }


def compare_packs(
    active: Iterable[ShadowAlert],
    candidate: Iterable[ShadowAlert],
    outcomes: Mapping[str, AcknowledgementOutcome | None],
) -> list[RuleShift]:
    """The shifts per rule (by id) from ``active`` to ``candidate``; ``outcomes`` by dedup key."""
    now = {a.dedup_key: a for a in active}
    then = {a.dedup_key: a for a in candidate}
    shifts: dict[str, RuleShift] = defaultdict(lambda: RuleShift(""))

    def shift(rule_id: str) -> RuleShift:
        found = shifts[rule_id]
        found.rule_id = rule_id
        return found

    for key, alert in now.items():
        s = shift(alert.rule_id)
        s.active += 1
        s.tiers["active"] = alert.tier
        if key in then:
            s.kept += 1
            continue
        s.dropped += 1
        outcome = outcomes.get(key)
        if outcome is not None:
            s.dropped_judged += 1
            s.dropped_overridden += outcome in OVERRIDES
    for key, alert in then.items():
        s = shift(alert.rule_id)
        s.candidate += 1
        s.tiers["candidate"] = alert.tier
        if key not in now:
            s.added += 1
    return [shifts[rule] for rule in sorted(shifts)]


__all__ = ["RuleShift", "ShadowAlert", "compare_packs"]

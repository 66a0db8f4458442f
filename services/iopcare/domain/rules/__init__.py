"""The clinical rules: what a patient's engagement state says a counselor should know. Pure.

Each rule is one small function in the module of its clinical concern, carrying its own explanation
and evidence; every number comes from the :class:`RulePack` it is given (``iopcare.rulepacks`` loads them).

- :func:`evaluate_event`: the findings an event leads to, after it was applied to the state;
- time rules (silence, week close, family therapy by day 21) run through
  :mod:`iopcare.domain.absence` (``due_checks`` / ``observe``);
- :mod:`iopcare.domain.risk`: the relapse-risk score.

docs/rules.md describes every rule, its numbers and its episodes.
"""

from iopcare.domain.rules.events import EVENT_RULES, evaluate_event, week_closed
from iopcare.domain.rules.pack import RULE_IDS, LevelCatalogue, RulePack, RulePackError, validate_pack

__all__ = [
    "EVENT_RULES",
    "RULE_IDS",
    "LevelCatalogue",
    "RulePack",
    "RulePackError",
    "evaluate_event",
    "validate_pack",
    "week_closed",
]

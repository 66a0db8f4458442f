"""A test-only local rule (loaded through a rule pack's ``[local_rules]``) that raises on one event.

It stands for a defect in a real rule: a schema-valid event whose processing raises. The processor
must dead-letter that one event as ``processing_failed`` and go on with the rest of its partition.
"""

from __future__ import annotations

from iopcare.contract import CheckInSubmitted
from iopcare.domain.engagement import PatientState
from iopcare.domain.rules.pack import RulePack
from iopcare.domain.signals import Finding

POISON_ID_PREFIX = "poison-"


class RuleDefect(RuntimeError):
    """What the defective rule raises."""


def defective_rule(state: PatientState, event: CheckInSubmitted, pack: RulePack) -> list[Finding]:
    if event.id.startswith(POISON_ID_PREFIX):
        raise RuleDefect(f"cannot judge {event.subject}")  # a message with patient data on purpose
    return []


EVENT_RULES = {CheckInSubmitted: (defective_rule,)}

"""Scoring a rule pack's alerts and risk scores against outcomes. Pure: data in, measures out.

The unit of time is the day (outcomes are dated, alerts are dated in the clinic's zone).

- An alert raised on day ``a`` by a rule with horizon ``h`` is a **hit** when it *foresees*
  something (a lapse starts, the patient drops out or has a crisis on a day after ``a`` and at most
  ``h`` days later) or *reports* it (``a`` falls within a lapse episode or up to ``REPORTED_WITHIN``
  days after it, within ``REPORTED_WITHIN`` days after a crisis, or within ``DROPOUT_REPORTED_WITHIN``
  days after the patient stopped coming). PPV is hits over alerts.
- A lapse episode (not one before intake) or a dropout on day ``o`` is **foreseen** when a page or
  inbox alert was raised on a day ``a`` with ``o - h <= a < o``: strictly before, so an alert that
  only reports the use does not count. Sensitivity is the share foreseen, the lead time ``o - a``
  for the earliest such alert.
- The risk score is sampled weekly per patient; each sample is labelled by whether a lapse episode
  covers any of the next ``RISK_WINDOW_DAYS`` days. AUC (Mann-Whitney, ties count half) and Brier
  score (with score / 100 as the probability) measure it.
- Burden: alerts per patient-week by tier; for steady patients, page + inbox alerts per 90 days
  observed and the share with none; digests per counselor-day (a digest is one counselor's day
  with at least one digest-tier alert).

Every measure is also reported per subgroup (population, level of care): a patient's alerts,
outcomes and samples fall in the level of care they were at on that day.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from iopcare.domain.rules.pack import TIERS, Tier
from iopcare.evaluation.outcomes import PatientOutcome

REPORTED_WITHIN = 7
"""An alert up to a week after a lapse episode or a crisis reports it (a screen lags use by days)."""
DROPOUT_REPORTED_WITHIN = 14
"""An alert up to two weeks after the patient stopped coming reports the dropout."""
RISK_WINDOW_DAYS = 7
"""The risk score is judged on "a lapse within the next 7 days"."""
STEADY = "steady"


@dataclass(frozen=True)
class RaisedAlert:
    """One alert as evaluation sees it: whose, which rule, how it reached the counselor, when."""

    patient_id: str
    rule_id: str
    tier: Tier
    horizon_days: int
    on: date
    level: str | None = None


@dataclass(frozen=True)
class RiskSample:
    patient_id: str
    on: date
    score: int
    level: str | None = None


@dataclass(frozen=True)
class Followed:
    """A patient as evaluation follows them: their outcomes, counselor and levels of care."""

    outcome: PatientOutcome
    counselor_id: str | None = None
    levels: tuple[tuple[date, str], ...] = ()  # (from day, level), in order

    @property
    def patient_id(self) -> str:
        return self.outcome.patient_id

    @property
    def first_day(self) -> date:
        return self.outcome.program_start

    @property
    def days(self) -> list[date]:
        return [self.first_day + timedelta(days=n) for n in range(self.outcome.observed_days)]

    def level_on(self, day: date) -> str | None:
        level = self.levels[0][1] if self.levels else None
        for since, code in self.levels:
            if since <= day:
                level = code
        return level


@dataclass
class RuleMeasures:
    alerts: int = 0
    hits: int = 0
    tier: Tier = "inbox"
    steady_alerts: int = 0  # of them, alerts about steady patients

    @property
    def ppv(self) -> float | None:
        return self.hits / self.alerts if self.alerts else None


@dataclass
class Measures:
    """What ``iopcare evaluate`` reports, for the whole cohort or one subgroup."""

    patients: int = 0
    patient_weeks: float = 0.0
    alerts_by_tier: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    hits_by_tier: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TIERS, 0))
    lapses: int = 0
    lapses_foreseen: int = 0
    dropouts: int = 0
    dropouts_foreseen: int = 0
    lead_days: list[int] = field(default_factory=list)
    steady_patients: int = 0
    steady_alerts: int = 0
    steady_days: int = 0
    steady_with_none: int = 0
    risk_auc_7d: float | None = None
    risk_brier_7d: float | None = None
    risk_samples: int = 0
    digests: int = 0
    counselor_days: int = 0
    per_rule: dict[str, RuleMeasures] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The measures as one JSON-ready object (the keys ``iopcare evaluate --json`` prints)."""
        weeks = self.patient_weeks
        return {
            "patients": self.patients,
            "patient_weeks": round(weeks, 1),
            "alerts_per_patient_week": {tier: _ratio(self.alerts_by_tier[tier], weeks) for tier in TIERS},
            "page_ppv": _ratio(self.hits_by_tier["page"], self.alerts_by_tier["page"]),
            "lapse_sensitivity": _ratio(self.lapses_foreseen, self.lapses),
            "dropout_sensitivity": _ratio(self.dropouts_foreseen, self.dropouts),
            "lapses": self.lapses,
            "dropouts": self.dropouts,
            "median_lead_days": statistics.median(self.lead_days) if self.lead_days else None,
            "steady_patients": self.steady_patients,
            "steady_alerts_per_90_days": _ratio(self.steady_alerts * 90, self.steady_days),
            "steady_share_with_none": _ratio(self.steady_with_none, self.steady_patients),
            "risk_auc_7d": _round(self.risk_auc_7d),
            "risk_brier_7d": _round(self.risk_brier_7d),
            "risk_samples": self.risk_samples,
            "digests_per_counselor_day": _ratio(self.digests, self.counselor_days),
            "per_rule": {
                rule: {
                    "alerts": m.alerts,
                    "hits": m.hits,
                    "ppv": _round(m.ppv),
                    "tier": m.tier,
                    "steady_alerts": m.steady_alerts,
                }
                for rule, m in sorted(self.per_rule.items())
            },
        }


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# --- the scoring -----------------------------------------------------------------------------------


def is_hit(alert: RaisedAlert, outcome: PatientOutcome) -> bool:
    """Did something clinically relevant follow the alert within its horizon, or had it just happened?"""
    a, ahead = alert.on, timedelta(days=alert.horizon_days)
    recent = timedelta(days=REPORTED_WITHIN)
    for lapse in outcome.lapses:
        if lapse.start <= a <= lapse.end + recent:
            return True  # reports it
        if not lapse.before_intake and a < lapse.start <= a + ahead:
            return True  # foresees it
    for crisis in outcome.crises:
        if crisis <= a <= crisis + recent or a < crisis <= a + ahead:
            return True
    dropout = outcome.dropout
    return dropout is not None and (
        dropout <= a <= dropout + timedelta(days=DROPOUT_REPORTED_WITHIN) or a < dropout <= a + ahead
    )


def lead_days(day: date, alerts: Sequence[RaisedAlert]) -> int | None:
    """Days between the earliest page or inbox alert that foresaw ``day`` (within its horizon,
    strictly before) and ``day``; None if none did."""
    leads = [
        (day - alert.on).days
        for alert in alerts
        if alert.tier != "digest" and alert.on < day and (day - alert.on).days <= alert.horizon_days
    ]
    return max(leads) if leads else None


def auc(samples: Sequence[tuple[float, bool]]) -> float | None:
    """Area under the ROC curve (the chance a positive outranks a negative; ties count half)."""
    ranked = sorted(samples, key=lambda s: s[0])
    positives = sum(1 for _, label in ranked if label)
    negatives = len(ranked) - positives
    if not positives or not negatives:
        return None
    rank_sum, index = 0.0, 0
    while index < len(ranked):
        end = index
        while end < len(ranked) and ranked[end][0] == ranked[index][0]:
            end += 1
        mean_rank = (index + 1 + end) / 2  # ranks index+1 .. end share their mean
        rank_sum += mean_rank * sum(1 for _, label in ranked[index:end] if label)
        index = end
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def brier(samples: Sequence[tuple[float, bool]]) -> float | None:
    """Mean squared difference between the probability and what happened (0 is perfect)."""
    if not samples:
        return None
    return sum((p - (1.0 if label else 0.0)) ** 2 for p, label in samples) / len(samples)


def lapse_ahead(outcome: PatientOutcome, day: date, window: int = RISK_WINDOW_DAYS) -> bool:
    """Does a lapse episode cover any of the ``window`` days after ``day``?"""
    first, last = day + timedelta(days=1), day + timedelta(days=window)
    return any(
        not lapse.before_intake and lapse.start <= last and lapse.end >= first for lapse in outcome.lapses
    )


def score(
    patients: Iterable[Followed],
    alerts: Iterable[RaisedAlert],
    samples: Iterable[RiskSample],
    *,
    tiers: Mapping[str, Tier],
    level: str | None = None,
) -> Measures:
    """The measures over ``patients`` (their alerts and samples; others' are ignored). With
    ``level``, only what happened while a patient was at that level of care counts."""
    followed = {p.patient_id: p for p in patients}
    alerts_of: dict[str, list[RaisedAlert]] = defaultdict(list)
    for alert in alerts:
        if alert.patient_id in followed and (level is None or alert.level == level):
            alerts_of[alert.patient_id].append(alert)
    measures = Measures(per_rule={rule: RuleMeasures(tier=tier) for rule, tier in tiers.items()})

    def at_level(patient: Followed, day: date) -> bool:
        return level is None or patient.level_on(day) == level

    counselor_days: dict[str | None, set[date]] = defaultdict(set)
    digest_days: set[tuple[str | None, date]] = set()
    for pid, patient in followed.items():
        outcome = patient.outcome
        days = [d for d in patient.days if at_level(patient, d)]
        if not days:
            continue
        measures.patients += 1
        measures.patient_weeks += len(days) / 7
        counselor_days[patient.counselor_id].update(days)
        own = alerts_of.get(pid, [])
        for alert in own:
            hit = is_hit(alert, outcome)
            measures.alerts_by_tier[alert.tier] += 1
            measures.hits_by_tier[alert.tier] += hit
            rule = measures.per_rule.setdefault(alert.rule_id, RuleMeasures(tier=alert.tier))
            rule.alerts += 1
            rule.hits += hit
            rule.steady_alerts += outcome.archetype == STEADY
            if alert.tier == "digest":
                digest_days.add((patient.counselor_id, alert.on))
        for lapse in outcome.lapses:
            if lapse.before_intake or not at_level(patient, lapse.start):
                continue
            measures.lapses += 1
            lead = lead_days(lapse.start, own)
            if lead is not None:
                measures.lapses_foreseen += 1
                measures.lead_days.append(lead)
        if outcome.dropout is not None and at_level(patient, outcome.dropout):
            measures.dropouts += 1
            lead = lead_days(outcome.dropout, own)
            if lead is not None:
                measures.dropouts_foreseen += 1
                measures.lead_days.append(lead)
        if outcome.archetype == STEADY:
            interruptions = sum(1 for alert in own if alert.tier != "digest")
            measures.steady_patients += 1
            measures.steady_alerts += interruptions
            measures.steady_days += len(days)
            measures.steady_with_none += interruptions == 0
    measures.digests = len(digest_days)
    measures.counselor_days = sum(len(days) for days in counselor_days.values())
    labelled = [
        (sample.score / 100, lapse_ahead(followed[sample.patient_id].outcome, sample.on))
        for sample in samples
        if sample.patient_id in followed and (level is None or sample.level == level)
    ]
    measures.risk_samples = len(labelled)
    measures.risk_auc_7d = auc(labelled)
    measures.risk_brier_7d = brier(labelled)
    return measures


@dataclass
class Evaluation:
    """The measures overall and by subgroup."""

    overall: Measures
    subgroups: dict[str, dict[str, Measures]]  # dimension -> group -> measures

    def summary(self) -> dict[str, Any]:
        return {
            **self.overall.summary(),
            "subgroups": {
                dimension: {group: m.summary() for group, m in sorted(groups.items())}
                for dimension, groups in self.subgroups.items()
            },
        }


def evaluate(
    patients: Sequence[Followed],
    alerts: Sequence[RaisedAlert],
    samples: Sequence[RiskSample],
    *,
    tiers: Mapping[str, Tier],
) -> Evaluation:
    """Score overall, then per population and per level of care."""
    overall = score(patients, alerts, samples, tiers=tiers)
    by_population: dict[str, Measures] = {}
    for population in sorted({p.outcome.population for p in patients}):
        members = [p for p in patients if p.outcome.population == population]
        by_population[population] = score(members, alerts, samples, tiers=tiers)
    levels = sorted({code for p in patients for _, code in p.levels})
    by_level = {code: score(patients, alerts, samples, tiers=tiers, level=code) for code in levels}
    return Evaluation(overall, {"population": by_population, "level_of_care": by_level})


__all__ = [
    "DROPOUT_REPORTED_WITHIN",
    "REPORTED_WITHIN",
    "RISK_WINDOW_DAYS",
    "Evaluation",
    "Followed",
    "Measures",
    "RaisedAlert",
    "RiskSample",
    "RuleMeasures",
    "auc",
    "brier",
    "evaluate",
    "is_hit",
    "lapse_ahead",
    "lead_days",
    "score",
]

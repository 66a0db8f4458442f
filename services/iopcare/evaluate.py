"""``iopcare evaluate``: a rule pack scored against what happened to the patients.

The same offline run as ``iopcare replay`` (each patient's course on the events' own clock, as the
processor decides live), watched from outside: every alert raised (rule, tier, day, the patient's
level of care then) and the patient's relapse-risk score once a week, then scored against an
outcomes file (:mod:`iopcare.evaluation.outcomes`) by :mod:`iopcare.evaluation.scoring`. The rules
never see the outcomes.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from datetime import time as clock_time
from pathlib import Path
from typing import Any, get_args

from iopcare.contract import (
    AcknowledgementOutcome,
    InboundEvent,
    LevelOfCareChanged,
    PatientEnrolled,
    decode_event,
)
from iopcare.domain.alerts import Alert
from iopcare.domain.backtest import StreamReplay
from iopcare.domain.risk import risk_score
from iopcare.domain.rules import RulePack
from iopcare.domain.rules.pack import TIERS
from iopcare.evaluation.acknowledgements import (
    DEMOTE_ABOVE,
    MIN_OUTCOMES,
    RECENT_DAYS,
    RuleVerdict,
    overall,
)
from iopcare.evaluation.outcomes import PatientOutcome, read_outcomes
from iopcare.evaluation.scoring import (
    Evaluation,
    Followed,
    Measures,
    RaisedAlert,
    RiskSample,
    evaluate,
)
from iopcare.evaluation.shadow import RuleShift, ShadowAlert
from iopcare.replay import Progress, collecting_less, read_events

SAMPLE_EVERY = timedelta(days=7)


@dataclass
class _Watch:
    """What the run records about one patient besides their alerts."""

    counselor_id: str | None = None
    levels: list[tuple[date, str]] = field(default_factory=list)

    def level(self) -> str | None:
        return self.levels[-1][1] if self.levels else None


@dataclass
class Scored:
    """One pack's evaluation over one events file."""

    pack: RulePack
    evaluation: Evaluation
    events: int
    seconds: float
    invalid_lines: dict[str, int]
    unmatched_patients: int  # patients in the events with no outcome (left out of the scores)


def _reached(effects: Any) -> Iterator[Alert]:
    """The alerts a step created that reached someone: not one resolved in the same step it was
    raised in (a late event of a discharged patient, a use report a step-up summarizes at once)."""
    gone = {c.alert.alert_id for c in effects.changes if c.kind == "resolved"}
    for change in effects.changes:
        if change.kind == "created" and change.alert.alert_id not in gone:
            yield change.alert


def run_evaluation(
    events: Iterable[InboundEvent], outcomes: dict[str, PatientOutcome], pack: RulePack
) -> tuple[Evaluation, int, int]:
    """Replay ``events`` through ``pack`` and score it against ``outcomes``; returns the evaluation,
    the number of events and of patients without an outcome."""
    zone: tzinfo = pack.program_calendar.zone
    replay = StreamReplay(pack)
    watched: dict[str, _Watch] = {}
    alerts: list[RaisedAlert] = []
    samples: list[RiskSample] = []
    # (when, patient, last day the sample covers): weekly from each followed patient's program start.
    due: list[tuple[datetime, str, date]] = []
    for pid, outcome in outcomes.items():
        last = outcome.program_start + timedelta(days=outcome.observed_days - 1)
        if outcome.dropout is not None:
            last = min(last, outcome.dropout - timedelta(days=1))
        first = datetime.combine(outcome.program_start, clock_time(0), zone)
        at = first + SAMPLE_EVERY
        while (at - timedelta(days=1)).date() <= last:
            due.append((at, pid, (at - timedelta(days=1)).date()))
            at += SAMPLE_EVERY
    heapq.heapify(due)
    count = 0

    def sample_until(now: datetime | None) -> None:
        while due and (now is None or due[0][0] <= now):
            at, pid, covered = heapq.heappop(due)
            course = replay.courses.get(pid)
            if course is None or course.state.enrollment is None:
                continue
            watch = watched.get(pid, _Watch())
            score = risk_score(course.state, at, pack).score
            samples.append(RiskSample(pid, covered, score, watch.level()))

    def record(moves: Iterable[tuple[str, Any]]) -> None:
        for pid, effects in moves:
            watch = watched.get(pid, _Watch())
            for alert in _reached(effects):
                alerts.append(
                    RaisedAlert(
                        patient_id=pid,
                        rule_id=alert.rule_id,
                        tier=alert.tier,
                        horizon_days=pack.horizon(alert.rule_id),
                        on=alert.raised_at.astimezone(zone).date(),
                        level=watch.level(),
                    )
                )

    with collecting_less():
        for event in events:
            count += 1
            sample_until(event.time)
            watch = watched.setdefault(event.subject, _Watch())
            on = event.time.astimezone(zone).date()
            if isinstance(event, PatientEnrolled):
                watch.counselor_id = event.data.counselor_id
                watch.levels.append((on, event.data.level_of_care))
            elif isinstance(event, LevelOfCareChanged):
                watch.levels.append((on, event.data.to_level))
            record(replay.feed(event))
        record(replay.finish())
        sample_until(None)
    followed = [
        Followed(outcome, watched[pid].counselor_id, tuple(watched[pid].levels))
        for pid, outcome in outcomes.items()
        if pid in watched
    ]
    unmatched = sum(1 for pid in replay.courses if pid not in outcomes)
    tiers = {rule: pack.tier(rule) for rule in pack.enabled_rules}
    return evaluate(followed, alerts, samples, tiers=tiers), count, unmatched


def evaluate_files(
    events_file: Path, outcomes_file: Path, pack: RulePack, progress: Progress | None = None
) -> Scored:
    """Score ``pack`` over the events of ``events_file`` against ``outcomes_file``."""
    outcomes = {o.patient_id: o for o in read_outcomes(outcomes_file)}
    invalid: dict[str, int] = {}
    started = time.perf_counter()
    evaluation, events, unmatched = run_evaluation(
        read_events(events_file, invalid, progress), outcomes, pack
    )
    return Scored(pack, evaluation, events, time.perf_counter() - started, invalid, unmatched)


# --- the report --------------------------------------------------------------------------------

_MEASURES: list[tuple[str, str, Callable[[dict[str, Any]], Any], str]] = [
    # (label, target, value, format)
    ("page alerts per patient-week", "<= 0.2", lambda s: s["alerts_per_patient_week"]["page"], ".3f"),
    (
        "page + inbox per patient-week",
        "<= 0.5",
        lambda s: _sum(s["alerts_per_patient_week"]["page"], s["alerts_per_patient_week"]["inbox"]),
        ".3f",
    ),
    ("digest alerts per patient-week", "", lambda s: s["alerts_per_patient_week"]["digest"], ".3f"),
    ("digests per counselor-day", "<= 1", lambda s: s["digests_per_counselor_day"], ".2f"),
    ("page PPV", ">= 0.6", lambda s: s["page_ppv"], ".2f"),
    ("lapse sensitivity", ">= 0.85", lambda s: s["lapse_sensitivity"], ".2f"),
    ("dropout sensitivity", ">= 0.8", lambda s: s["dropout_sensitivity"], ".2f"),
    ("median lead time (days)", ">= 3", lambda s: s["median_lead_days"], ".1f"),
    ("steady: page + inbox per 90 days", "<= 1.0", lambda s: s["steady_alerts_per_90_days"], ".2f"),
    ("steady: share with none", ">= 0.8", lambda s: s["steady_share_with_none"], ".2f"),
    ("risk score AUC, lapse in 7 days", ">= 0.85", lambda s: s["risk_auc_7d"], ".3f"),
    ("risk score Brier, lapse in 7 days", "", lambda s: s["risk_brier_7d"], ".3f"),
]


def _sum(*values: float | None) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _cell(value: Any, shape: str) -> str:
    return "-" if value is None else format(value, shape)


def _table(rows: list[list[str]], left: int = 1) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        cells = [c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def render(runs: list[Scored]) -> list[str]:
    """The report: the measures against their targets, per rule, and per subgroup."""
    first = runs[0]
    overall = [run.evaluation.overall.summary() for run in runs]
    head = overall[0]
    lines = [
        f"{first.events:,} events, {head['patients']:,} patients with outcomes, "
        f"{head['patient_weeks']:,.1f} patient-weeks; {head['lapses']:,} lapse episodes, "
        f"{head['dropouts']:,} dropouts, {head['steady_patients']:,} steady patients"
    ]
    if first.unmatched_patients:
        lines.append(f"left out: {first.unmatched_patients:,} patients in the events have no outcome")
    if first.invalid_lines:
        skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(first.invalid_lines.items()))
        lines.append(f"skipped invalid lines: {skipped}")
    versions = [run.pack.version for run in runs]
    rows = [["measure", "target", *versions]]
    for label, target, value, shape in _MEASURES:
        rows.append([label, target, *(_cell(value(s), shape) for s in overall)])
    lines += ["", *_table(rows, left=2)]
    rules = sorted({rule for s in overall for rule in s["per_rule"]})
    rows = [
        [
            "rule",
            "tier",
            *(f"{v} alerts" for v in versions),
            *(f"{v} PPV" for v in versions),
            *(f"{v} on steady" for v in versions),
        ]
    ]
    for rule in rules:
        missing = {"alerts": 0, "ppv": None, "tier": "-", "steady_alerts": 0}
        entries = [s["per_rule"].get(rule, missing) for s in overall]
        rows.append(
            [
                rule,
                entries[-1]["tier"],
                *(f"{e['alerts']:,}" for e in entries),
                *(_cell(e["ppv"], ".2f") for e in entries),
                *(f"{e['steady_alerts']:,}" for e in entries),
            ]
        )
    lines += ["", *_table(rows, left=2)]
    for dimension, groups in first.evaluation.subgroups.items():
        rows = [
            [
                dimension.replace("_", " "),
                "patients",
                "page/pt-wk",
                "page PPV",
                "lapse sens.",
                "dropout sens.",
                "AUC 7d",
            ]
        ]
        for group, measures in sorted(groups.items()):
            s = measures.summary()
            rows.append(
                [
                    group,
                    f"{s['patients']:,}",
                    _cell(s["alerts_per_patient_week"]["page"], ".3f"),
                    _cell(s["page_ppv"], ".2f"),
                    _cell(s["lapse_sensitivity"], ".2f"),
                    _cell(s["dropout_sensitivity"], ".2f"),
                    _cell(s["risk_auc_7d"], ".3f"),
                ]
            )
        lines += ["", f"by {dimension.replace('_', ' ')} (pack {first.pack.version}):", *_table(rows)]
    return lines


def as_json(runs: list[Scored]) -> dict[str, Any]:
    """The first pack's summary (with its subgroups); a second pack's under ``compare``."""
    document = {"rule_pack": runs[0].pack.version, "events": runs[0].events, **runs[0].evaluation.summary()}
    if len(runs) > 1:
        document["compare"] = {"rule_pack": runs[1].pack.version, **runs[1].evaluation.summary()}
    return document


# --- the counselors' own verdict (from the database) -------------------------------------------


def render_verdicts(found: list[RuleVerdict], since: date, until: date) -> list[str]:
    """The counselors' precision, override rate and time to acknowledge per rule, with the rules
    whose override rate stays above the line named as candidates to demote."""
    totals = overall(found)
    head = totals["all"]
    lines = [
        f"alerts raised {since} to {until} (before {until}): {head['alerts']:,}, "
        f"{head['with_outcome']:,} acknowledged with an outcome"
    ]
    if not head["with_outcome"]:
        lines.append("no acknowledgement recorded an outcome in this period: nothing to judge yet")
    rows = [["tier", "alerts", "with outcome", "precision", "override rate"]]
    for tier in ("all", *TIERS):
        t = totals[tier]
        rows.append(
            [
                tier,
                f"{t['alerts']:,}",
                f"{t['with_outcome']:,}",
                _cell(t["precision"], ".2f"),
                _cell(t["override_rate"], ".2f"),
            ]
        )
    lines += ["", *_table(rows)]
    rows = [
        [
            "rule",
            "tier",
            "alerts",
            "acknowledged",
            "contacted",
            "changed plan",
            "no action",
            "false alarm",
            "override rate",
            f"last {RECENT_DAYS} d",
            "median h to ack",
            "p90 h",
            "demote to",
        ]
    ]
    for v in found:
        rows.append(
            [
                v.rule_id,
                v.tier,
                f"{v.alerts:,}",
                f"{v.acknowledged:,}",
                *(f"{v.outcomes.get(o, 0):,}" for o in get_args(AcknowledgementOutcome)),
                _cell(v.override_rate, ".2f"),
                _cell(v.recent_override_rate, ".2f"),
                _cell(v.median_hours_to_acknowledge, ".1f"),
                _cell(v.p90_hours_to_acknowledge, ".1f"),
                v.demote_to or "-",
            ]
        )
    lines += ["", *_table(rows, left=2)]
    candidates = [v for v in found if v.demote_to]
    lines.append("")
    if candidates:
        for v in candidates:
            lines.append(
                f"candidate to demote: {v.rule_id} ({v.tier} -> {v.demote_to}): overridden "
                f"{v.override_rate:.0%} of {v.with_outcome:,} times, {v.recent_override_rate:.0%} in the "
                f"last {RECENT_DAYS} days"
            )
    else:
        lines.append(
            f"no rule's override rate stays above {DEMOTE_ABOVE:.0%} (with at least {MIN_OUTCOMES} "
            f"outcomes overall and in the last {RECENT_DAYS} days)"
        )
    return lines


def verdicts_json(found: list[RuleVerdict], since: date, until: date) -> dict[str, Any]:
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "counselors": overall(found),
        "per_rule": {v.rule_id: v.summary() for v in found},
    }


__all__ = [
    "Measures",
    "Scored",
    "as_json",
    "evaluate_files",
    "render",
    "render_shifts",
    "render_verdicts",
    "run_evaluation",
    "shadow_alerts",
    "verdicts_json",
]


# --- a candidate pack beside the active one (from the event log) -------------------------------


async def shadow_alerts(
    connection: Any, packs: list[RulePack], since: datetime, until: datetime
) -> list[list[ShadowAlert]]:
    """What each pack raised (or would have) from ``since`` to ``until``: the event log up to
    ``until`` replayed through each pack's courses, as the processor decides (on event time), the
    alerts created in the period kept. Runs in the caller's transaction (a cursor)."""
    replays = [StreamReplay(pack, until=until) for pack in packs]
    raised: list[dict[str, ShadowAlert]] = [{} for _ in packs]

    def record(index: int, moves: Iterable[tuple[str, Any]]) -> None:
        for _pid, effects in moves:
            for alert in _reached(effects):
                if since <= alert.raised_at < until:
                    raised[index][alert.dedup_key] = ShadowAlert(alert.dedup_key, alert.rule_id, alert.tier)

    with collecting_less():
        async for row in connection.cursor(
            "SELECT payload::text AS payload FROM event_log WHERE event_time < $1 "
            "ORDER BY event_time, source, event_id",
            until,
            prefetch=1000,
        ):
            event = decode_event(row["payload"].encode())
            for index, replay in enumerate(replays):
                record(index, replay.feed(event))
        for index, replay in enumerate(replays):
            record(index, replay.finish())
    return [list(found.values()) for found in raised]


def render_shifts(active: RulePack, candidate: RulePack, shifts: list[RuleShift]) -> list[str]:
    """Per rule: what switching from ``active`` to ``candidate`` would keep, drop and add."""
    rows = [
        [
            "rule",
            "tier",
            f"{active.version}",
            f"{candidate.version}",
            "kept",
            "dropped",
            "dropped: overridden / judged",
            "added (unjudged)",
        ]
    ]
    for s in shifts:
        tiers = {s.tiers.get("active", "-"), s.tiers.get("candidate", "-")} - {"-"}
        rows.append(
            [
                s.rule_id,
                " -> ".join(sorted(tiers)) if len(tiers) > 1 else next(iter(tiers), "-"),
                f"{s.active:,}",
                f"{s.candidate:,}",
                f"{s.kept:,}",
                f"{s.dropped:,}",
                f"{s.dropped_overridden:,} / {s.dropped_judged:,}",
                f"{s.added:,}",
            ]
        )
    total = [sum(getattr(s, name) for s in shifts) for name in ("active", "candidate", "dropped", "added")]
    lines = [
        "",
        f"candidate {candidate.version} beside {active.version} over the same events (the event log "
        f"replayed through both): {total[0]:,} alerts -> {total[1]:,}; {total[2]:,} dropped, "
        f"{total[3]:,} added",
        *_table(rows, left=2),
    ]
    return lines

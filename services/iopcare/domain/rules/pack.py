"""The rule pack: every threshold, window, severity and response target of the rules, as configuration.

A clinic's rules are a TOML file (the default is ``iopcare/rulepacks/default.toml``, which implements
the default clinical table of docs/rules.md). This module is the pack's model, pure: reading a file
and importing a pack's local rule modules are ``iopcare.rulepacks``'s. :func:`validate_pack` checks
a document read from TOML; every problem is reported with where it is
(``rules.craving_high.at_least``) and what is wrong with it, so a clinic can fix its pack without
reading code. The pack is complete on purpose: every rule and every number is written out, nothing
falls back to a default hidden in code.

The level-of-care catalogue lives here too (ASAM 3rd edition by default), so a clinic on the 4th
edition changes a table, not the rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, timedelta, tzinfo
from functools import cached_property
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from iopcare.contract import Severity, Tier
from iopcare.domain.engagement import EARLY_SESSIONS_KEPT, Tuning
from iopcare.domain.measures import ProgramCalendar

__all__ = [
    "ALWAYS_PAGE",
    "RULE_IDS",
    "TIERS",
    "Level",
    "LevelCatalogue",
    "LocalRules",
    "RulePack",
    "RulePackError",
    "Tier",
    "validate_pack",
]

SEVERITIES: tuple[Severity, ...] = ("critical", "high", "medium", "low", "info")

# Rule ids and versions end up in the alert contract as tokens.
Token = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:+-]{0,63}$")]
LevelCode = Annotated[str, StringConstraints(pattern=r"^\d(\.\d)?$")]
RESPONSE_TARGET = re.compile(r"^(?P<amount>\d+)\s*(?P<unit>m|min|h|d)$")
_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days"}


class _Lookback:
    """Marks a field as a look-back window (in ``unit``): it may not reach further back than the
    history the patient state keeps (``history.retention_days``), checked on the whole pack."""

    def __init__(self, unit: Literal["days", "hours"]) -> None:
        self.unit = unit


WindowDays = Annotated[int, Field(ge=1), _Lookback("days")]
"""A look-back window in days: at least 1, at most what the state remembers."""
WindowHours = Annotated[int, Field(ge=1), _Lookback("hours")]
"""A look-back window in hours: at least 1, at most what the state remembers."""


def _lookbacks(model: BaseModel, path: str) -> list[tuple[str, int, str]]:
    """(dotted path, value, unit) of every look-back window in ``model`` and its sub-models."""
    found: list[tuple[str, int, str]] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        marks = [m for m in info.metadata if isinstance(m, _Lookback)]
        if marks:
            found.append((f"{path}.{name}", value, marks[0].unit))
        elif isinstance(value, BaseModel):
            found += _lookbacks(value, f"{path}.{name}")
        elif isinstance(value, list | tuple):
            found += [
                hit
                for index, item in enumerate(value)
                if isinstance(item, BaseModel)
                for hit in _lookbacks(item, f"{path}.{name}[{index}]")
            ]
    return found


class _PackModel(BaseModel):
    # Unknown keys are errors: a misspelt threshold must not silently keep its default.
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- rules ---------------------------------------------------------------------------------------


TIERS: tuple[Tier, ...] = ("page", "inbox", "digest")
ALWAYS_PAGE: tuple[str, ...] = ("safety", "reported_use", "positive_screen")
"""Rules whose alerts always page: a safety signal, reported use and a positive screen are never
tiered down."""


class Rule(_PackModel):
    """What every rule has: a version (goes into each alert), a switch, how its alerts reach the
    counselor (``tier``) and how far ahead it looks (``horizon_days``: the alert was right if a
    lapse, a dropout or a crisis followed within it; ``iopcare evaluate`` scores it so)."""

    version: Token
    enabled: bool = True
    tier: Tier
    """page: webhook and inbox at once, escalates when nobody acknowledges; inbox: shown, no push,
    no escalation; digest: gathered into the counselor's daily summary."""
    horizon_days: int = Field(ge=1, le=90)
    recommended_action: str | None = Field(default=None, min_length=1, max_length=500)
    """The clinic's own wording of the recommended action (its protocol); the rule's default otherwise."""


class SeverityRule(Rule):
    severity: Severity


class Safety(SeverityRule):
    """Check-in reports a safety concern, or PHQ-9 item 9 at or above a score, or a positive C-SSRS."""

    safety_concern: bool
    phq9_item9_at_least: int = Field(ge=1, le=3)
    cssrs_positive: bool


class _EpisodeGap(SeverityRule):
    episode_gap_days: WindowDays

    @cached_property
    def gap(self) -> timedelta:
        return timedelta(days=self.episode_gap_days)


class ReportedUse(_EpisodeGap):
    """Check-in reports substance use."""


class PositiveScreen(_EpisodeGap):
    """Toxicology positive for a substance the patient is not prescribed."""


class CravingHigh(_EpisodeGap):
    at_least: int = Field(ge=0, le=10)


class _AgainstTheUsual(_EpisodeGap):
    """A rating judged on the last ``sustained_checkins`` check-ins against the patient's own range
    over the ``baseline_days`` before them (at least ``baseline_min_checkins`` check-ins there): the
    margin from the median is the rule's points or ``spread_multiplier`` spreads (MAD), if more."""

    sustained_checkins: int = Field(ge=1, le=7)
    spread_multiplier: float = Field(ge=0, le=10)
    baseline_days: WindowDays
    baseline_min_checkins: int = Field(ge=2, le=60)


class CravingRising(_AgainstTheUsual):
    """Craving above the usual range: each of the check-ins at least ``at_least`` and
    ``above_usual_by`` points above the median; without a baseline, a rise of ``rise_at_least``
    across the last ``checkins`` check-ins that ends at ``at_least`` or more."""

    at_least: int = Field(ge=0, le=10)
    above_usual_by: int = Field(ge=1, le=10)
    rise_at_least: int = Field(ge=1, le=10)
    checkins: int = Field(ge=2, le=14)


class MoodLow(_AgainstTheUsual):
    """Mood below the usual range: each of the check-ins at most ``at_most`` and ``below_usual_by``
    points below the median; without a baseline, at most ``at_most_without_baseline``."""

    at_most: int = Field(ge=0, le=10)
    below_usual_by: int = Field(ge=1, le=10)
    at_most_without_baseline: int = Field(ge=0, le=10)


class MissedInARow(SeverityRule):
    misses: int = Field(ge=1, le=50)


class _Window(SeverityRule):
    days: WindowDays

    @cached_property
    def window(self) -> timedelta:
        return timedelta(days=self.days)


class MissedOften(_Window):
    misses: int = Field(ge=1, le=50)


class EarlyDisengagement(SeverityRule):
    first_sessions: int = Field(ge=1, le=EARLY_SESSIONS_KEPT)
    misses: int = Field(ge=1, le=EARLY_SESSIONS_KEPT)


class WeeklyPlanShortfall(SeverityRule):
    excused_lower_the_plan: bool
    """An excused miss lowers that week's expectation (sessions of its kind and its hours)."""
    weeks_in_a_row: int = Field(ge=1, le=5)
    """A run of short weeks alerts from this week of the run on (named after its first week) ..."""
    unexcused_misses_at_once: int = Field(ge=1, le=20)
    """... or at once, in a week with this many unexcused misses."""


class FellowshipShortfall(SeverityRule):
    pass


class SilenceStep(_PackModel):
    hours: WindowHours
    severity: Severity

    @cached_property
    def after(self) -> timedelta:
        return timedelta(hours=self.hours)


class Silence(Rule):
    """No check-in for the ``after`` steps' hours (the floors), and, once the patient has a rhythm
    (``baseline_min_checkins`` check-ins in the ``baseline_days`` before), for as many days in a row
    as their rate of check-ins makes less likely than ``unlikely_below``: every step moves out by
    as much."""

    after: list[SilenceStep] = Field(min_length=1, max_length=5)
    baseline_days: WindowDays
    baseline_min_checkins: int = Field(ge=2, le=60)
    unlikely_below: float = Field(gt=0, lt=1)

    @field_validator("after")
    @classmethod
    def _increasing(cls, steps: list[SilenceStep]) -> list[SilenceStep]:
        hours = [s.hours for s in steps]
        if hours != sorted(set(hours)):
            raise PydanticCustomError("not_increasing", "silence steps must have increasing hours")
        return steps


HouseReportKind = Literal[
    "curfew_violation",
    "positive_test",
    "missed_house_meeting",
    "conflict",
    "left",
    "evicted",
    "compliant_week",
]


class SoberLivingIncident(Rule):
    severity_by_kind: dict[HouseReportKind, Severity] = Field(min_length=1)
    """Which house reports alert, and how urgently; kinds not listed do not alert."""
    tier_by_kind: dict[HouseReportKind, Tier] = Field(default_factory=dict)
    """Kinds whose alerts reach the counselor otherwise than the rule's ``tier`` (a missed house
    meeting in the daily digest); a kind that does not alert, or that must page, is refused."""

    @model_validator(mode="after")
    def _tiers_of_alerting_kinds(self) -> SoberLivingIncident:
        for kind in self.tier_by_kind:
            if kind not in self.severity_by_kind:
                raise PydanticCustomError(
                    "tier_of_silent_kind",
                    "tier_by_kind.{kind}: a {kind} report does not alert (not in severity_by_kind)",
                    {"kind": kind},
                )
        return self

    def tier_of(self, kind: HouseReportKind) -> Tier:
        return self.tier_by_kind.get(kind, self.tier)


class FamilyNoShow(SeverityRule):
    pass


class FamilyCancellations(_Window):
    cancellations: int = Field(ge=1, le=20)
    cancelled_by: list[Literal["patient", "family", "provider"]] = Field(min_length=1)


class FamilyNotBooked(SeverityRule):
    by_day: int = Field(ge=1, le=365)

    @cached_property
    def due_after(self) -> timedelta:
        return timedelta(days=self.by_day)


class StepUp(_Window):
    use_signals: int = Field(ge=1, le=20)
    attending_min_sessions: int = Field(ge=0, le=50)
    low_attendance_share: float = Field(gt=0, le=1)
    low_attendance_weeks: int = Field(ge=1, le=5)
    eviction_days: WindowDays
    supersedes: list[Token]

    @cached_property
    def eviction_window(self) -> timedelta:
        return timedelta(days=self.eviction_days)


class StepDown(SeverityRule):
    weeks: int = Field(ge=1, le=5)
    mean_craving_at_most: float = Field(ge=0, le=10)
    fellowship_counts: bool


class Rules(_PackModel):
    """One table per rule; the table name is the rule id that alerts carry."""

    safety: Safety
    reported_use: ReportedUse
    positive_screen: PositiveScreen
    craving_high: CravingHigh
    craving_rising: CravingRising
    mood_low: MoodLow
    missed_in_a_row: MissedInARow
    missed_often: MissedOften
    early_disengagement: EarlyDisengagement
    weekly_plan_shortfall: WeeklyPlanShortfall
    silence: Silence
    sober_living_incident: SoberLivingIncident
    family_no_show: FamilyNoShow
    family_cancellations: FamilyCancellations
    family_not_booked: FamilyNotBooked
    fellowship_shortfall: FellowshipShortfall
    step_up: StepUp
    step_down: StepDown

    @model_validator(mode="after")
    def _never_tiered_down(self) -> Rules:
        for name in ALWAYS_PAGE:
            tier = getattr(self, name).tier
            if tier != "page":
                raise PydanticCustomError(
                    "always_pages",
                    "{name}.tier: a {name} alert always pages (tier 'page'), not '{tier}'",
                    {"name": name, "tier": tier},
                )
        return self

    @model_validator(mode="after")
    def _supersedes_known_rules(self) -> Rules:
        for name in self.step_up.supersedes:
            if name not in RULE_IDS:
                raise PydanticCustomError(
                    "unknown_rule",
                    "step_up.supersedes: unknown rule '{name}'; known rules: {known}",
                    {"name": name, "known": ", ".join(RULE_IDS)},
                )
            if name in ("safety", "step_up"):
                raise PydanticCustomError(
                    "not_supersedable",
                    "step_up.supersedes: a {name} alert is never superseded",
                    {"name": name},
                )
        return self


RULE_IDS: tuple[str, ...] = tuple(Rules.model_fields)


# --- levels of care ------------------------------------------------------------------------------


class Level(_PackModel):
    code: LevelCode
    name: str = Field(min_length=1, max_length=80)


class LevelCatalogue(_PackModel):
    """The levels of care of one edition of the ASAM Criteria, least intensive first."""

    edition: str = Field(min_length=1, max_length=80)
    catalogue: list[Level] = Field(min_length=2)
    program: LevelCode
    """The level this program delivers (IOP: 2.1)."""
    step_up_to: list[LevelCode] = Field(min_length=1)
    """Levels a step-up recommendation names (more intensive than ``program``)."""
    step_down_to: LevelCode
    """The level a step-down recommendation names (less intensive than ``program``)."""

    @model_validator(mode="after")
    def _known_and_ordered(self) -> LevelCatalogue:
        codes = [level.code for level in self.catalogue]
        if len(set(codes)) != len(codes):
            raise PydanticCustomError("duplicate_level", "catalogue lists a level twice")
        for where, code in [
            ("program", self.program),
            *(("step_up_to", c) for c in self.step_up_to),
            ("step_down_to", self.step_down_to),
        ]:
            if code not in codes:
                raise PydanticCustomError(
                    "unknown_level",
                    "{where}: unknown level '{code}'; the catalogue ({edition}) has {codes}",
                    {"where": where, "code": code, "edition": self.edition, "codes": ", ".join(codes)},
                )
        program = codes.index(self.program)
        for code in self.step_up_to:
            if codes.index(code) <= program:
                raise PydanticCustomError(
                    "not_a_step_up",
                    "step_up_to: level '{code}' is not more intensive than the program level '{program}'",
                    {"code": code, "program": self.program},
                )
        if codes.index(self.step_down_to) >= program:
            raise PydanticCustomError(
                "not_a_step_down",
                "step_down_to: level '{code}' is not less intensive than the program level '{program}'",
                {"code": self.step_down_to, "program": self.program},
            )
        return self

    @cached_property
    def _rank(self) -> dict[str, int]:
        return {level.code: index for index, level in enumerate(self.catalogue)}

    def rank(self, code: str | None) -> int | None:
        """Position from least intensive (0); None for a level the catalogue does not list."""
        return None if code is None else self._rank.get(code)

    def at_step_up_level(self, code: str | None) -> bool:
        """Is ``code`` as intensive as a step-up target already (a level the catalogue lists)?"""
        rank = self.rank(code)
        return rank is not None and rank >= min(self._rank[target] for target in self.step_up_to)

    def name(self, code: str) -> str:
        for level in self.catalogue:
            if level.code == code:
                return level.name
        return code

    def describe(self, codes: list[str]) -> str:
        """``2.5 (partial hospitalization) or 3.1/3.3/3.5/3.7``: the first level named, the rest by code."""
        first = f"{codes[0]} ({self.name(codes[0])})"
        return first if len(codes) == 1 else f"{first} or {'/'.join(codes[1:])}"


# --- calendar, response targets, risk ------------------------------------------------------------


class Calendar(_PackModel):
    time_zone: str = Field(min_length=1)
    """IANA zone of the clinic: program weeks and the dates in explanations are local."""
    week_close_grace_hours: int = Field(ge=0, le=72)
    """How long after a program week ends its attendance is judged (late entries the next morning)."""
    digest_hour: int = Field(ge=0, le=23)
    """The local hour each counselor's daily digest of digest-tier alerts is made (docs/rules.md)."""

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        _zone(name)
        return name


def _zone(name: str) -> tzinfo:
    if name == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError("unknown_time_zone", "unknown time zone '{name}'", {"name": name}) from None


def _response_target(value: str) -> str:
    if value in ("next business day", "never") or RESPONSE_TARGET.match(value):
        return value
    raise PydanticCustomError(
        "bad_response_target",
        "bad response target '{value}': write e.g. '15m', '4h', '2d', 'next business day' or 'never'",
        {"value": value},
    )


ResponseTarget = Annotated[str, AfterValidator(_response_target)]


class ResponseTargets(_PackModel):
    """How soon an alert of each severity must be acknowledged before it escalates to the supervisor."""

    critical: ResponseTarget
    high: ResponseTarget
    medium: ResponseTarget
    low: ResponseTarget
    info: ResponseTarget
    business_day_starts_at_hour: int = Field(ge=0, le=23)


class Points(_PackModel):
    points: int = Field(ge=0, le=100)


class WindowPoints(Points):
    days: WindowDays


class CravingPoints(Points):
    at_least: int = Field(ge=0, le=10)
    days: WindowDays


class RisingPoints(Points):
    rise_at_least: int = Field(ge=1, le=10)
    checkins: int = Field(ge=2, le=14)


class MoodPoints(Points):
    mean_at_most: float = Field(ge=0, le=10)
    days: WindowDays


class SleepPoints(Points):
    mean_below_hours: float = Field(ge=0, le=24)
    days: WindowDays


class MissedPoints(_PackModel):
    points_each: int = Field(ge=0, le=100)
    max_points: int = Field(ge=0, le=100)
    days: WindowDays


class InARowPoints(Points):
    misses: int = Field(ge=1, le=50)


class SilencePoints(Points):
    hours: WindowHours


class AttendancePoints(Points):
    share_below: float = Field(gt=0, le=1)


class RiskFactors(_PackModel):
    """Points per contributing factor; the score is their sum, capped at 100."""

    reported_use: WindowPoints
    positive_screen: WindowPoints
    house_positive: WindowPoints
    craving_high: CravingPoints
    craving_rising: RisingPoints
    low_mood: MoodPoints
    short_sleep: SleepPoints
    missed_sessions: MissedPoints
    missed_in_a_row: InARowPoints
    silence: SilencePoints
    low_attendance: AttendancePoints
    safety: WindowPoints
    housing_unstable: WindowPoints
    house_incident: WindowPoints
    early_disengagement: Points


class Risk(_PackModel):
    version: Token
    trend_days: int = Field(ge=1, le=28)
    steady_within: int = Field(ge=0, le=100)
    """A change of at most this many points between the two scores counts as steady."""
    factors: RiskFactors


class PackInfo(_PackModel):
    version: Token
    name: str = Field(min_length=1, max_length=200)


ModulePath = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")]


class LocalRules(_PackModel):
    """Rules of a clinic's own (or a test's), in Python modules the pack names.

    Each module defines ``EVENT_RULES``: a mapping from contract event classes to a tuple of rules,
    each ``rule(state, event, pack) -> list[Finding]``, run after the pack's own rules for that event.
    """

    modules: list[ModulePath] = Field(min_length=1, max_length=20)


class History(_PackModel):
    """How much of a patient's history the state keeps, and how long late or held facts wait."""

    lateness_days: int = Field(ge=0, le=60)
    """An event older than this behind the patient's latest is *late* (still applied, and counted)."""
    retention_days: int = Field(ge=7, le=366)
    """Facts older than this behind the latest event are dropped; every rule window must fit in it."""
    consent_hold_days: int = Field(ge=1, le=90)
    """How long a third-party report waits for a consent that covers it before it expires."""

    @property
    def tuning(self) -> Tuning:
        return Tuning(
            lateness=timedelta(days=self.lateness_days),
            retention=timedelta(days=self.retention_days),
            consent_hold=timedelta(days=self.consent_hold_days),
        )


class Lifecycle(_PackModel):
    """How alerts relate to each other."""

    critical_inhibits_lesser: bool
    """While a critical alert is open, the patient's other alerts are raised and shown but neither
    notify nor escalate (they resume when it is resolved): the counselor's attention goes to it."""


class RulePack(_PackModel):
    """A clinic's complete rule configuration (see ``rulepacks/default.toml``)."""

    pack: PackInfo
    calendar: Calendar
    response_targets: ResponseTargets
    history: History
    lifecycle: Lifecycle
    levels: LevelCatalogue
    rules: Rules
    risk: Risk
    local_rules: LocalRules | None = None
    _local_event_rules: dict[type, tuple[Any, ...]] = PrivateAttr(default_factory=dict)

    @property
    def local_event_rules(self) -> Mapping[type, tuple[Any, ...]]:
        """The ``local_rules`` modules' rules by event class (imported when the pack was loaded)."""
        return self._local_event_rules

    def attach_local_event_rules(self, rules: Mapping[type, tuple[Any, ...]]) -> None:
        """Give the pack the rules its ``local_rules`` modules define (the loader imported them)."""
        self._local_event_rules = dict(rules)

    @model_validator(mode="after")
    def _windows_fit_the_history(self) -> RulePack:
        # A window longer than the history the state keeps would silently count too little.
        kept = self.history.retention_days
        for path, value, unit in _lookbacks(self.rules, "rules") + _lookbacks(self.risk, "risk"):
            days = value if unit == "days" else value / 24
            if days > kept:
                raise PydanticCustomError(
                    "window_too_long",
                    "{value} {unit} is longer than the {kept} days of history the patient state keeps "
                    "(history.retention_days)",
                    {"path": path, "value": value, "unit": unit, "kept": kept},
                )
        return self

    @property
    def tuning(self) -> Tuning:
        """The state's history settings (``[history]``), as the fold takes them."""
        return self.history.tuning

    @property
    def version(self) -> str:
        """The pack's version: alerts carry it as ``rule_pack_version``."""
        return self.pack.version

    def tier(self, rule_id: str) -> Tier:
        """How the rule's alerts reach the counselor; a rule the pack does not know (a clinic's
        local rule) is shown in the inbox."""
        rule = getattr(self.rules, rule_id, None)
        return rule.tier if isinstance(rule, Rule) else "inbox"

    def horizon(self, rule_id: str) -> int:
        """Days ahead the rule's alerts look (14 for a rule the pack does not know)."""
        rule = getattr(self.rules, rule_id, None)
        return rule.horizon_days if isinstance(rule, Rule) else 14

    @cached_property
    def summarized_by(self) -> dict[str, frozenset[str]]:
        """For each rule, the rules whose live alert stands for it (``step_up.supersedes``): while
        one is live, the lifecycle opens no new alert of the rule. Never for a rule that always
        pages: a new use report or positive screen is always an alert of its own."""
        if not self.rules.step_up.enabled:
            return {}
        return {
            rule: frozenset({"step_up"}) for rule in self.rules.step_up.supersedes if rule not in ALWAYS_PAGE
        }

    @cached_property
    def enabled_rules(self) -> frozenset[str]:
        """Ids of the rules switched on."""
        return frozenset(rule_id for rule_id in RULE_IDS if getattr(self.rules, rule_id).enabled)

    @cached_property
    def program_calendar(self) -> ProgramCalendar:
        """Program weeks in the clinic's time zone."""
        return ProgramCalendar(_zone(self.calendar.time_zone))

    @cached_property
    def week_close_grace(self) -> timedelta:
        return timedelta(hours=self.calendar.week_close_grace_hours)

    def response_target(self, severity: Severity) -> timedelta | Literal["never"] | None:
        """The severity's deadline: a duration, None for the next business day, or "never"."""
        value: str = getattr(self.response_targets, severity)
        if value == "never":
            return "never"
        if value == "next business day":
            return None
        match = RESPONSE_TARGET.match(value)
        assert match is not None  # validated on load
        return timedelta(**{_UNITS[match["unit"]]: int(match["amount"])})

    def response_targets_by_severity(self) -> dict[Severity, timedelta | None]:
        """Deadlines of the severities that escalate (None: the next business day), for the lifecycle's
        ``fixed_deadlines(targets, business_day_start_hour)``; "never" severities are left out."""
        targets: dict[Severity, timedelta | None] = {}
        for severity in SEVERITIES:
            target = self.response_target(severity)
            if target != "never":
                targets[severity] = target
        return targets


# --- loading -------------------------------------------------------------------------------------


class RulePackError(ValueError):
    """A rule pack that cannot be used, with every problem found and where it is."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"rule pack {source} is invalid:\n" + "\n".join(f"  {p}" for p in problems))


def _where(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


def _problem(error: ErrorDetails) -> str:
    loc, kind = error["loc"], error["type"]
    where = _where(loc)
    if kind == "extra_forbidden":
        if len(loc) == 2 and loc[0] == "rules":
            return f"{where}: unknown rule {loc[1]!r}; known rules: {', '.join(RULE_IDS)}"
        return f"{where}: unknown field"
    if kind == "missing":
        return f"{where}: missing field"
    if kind == "literal_error" and loc and loc[-1] == "[key]":
        return f"{_where(loc[:-1])}: unknown house report kind; {error['msg'].lower()}"
    if kind == "literal_error" and loc and (loc[-1] == "severity" or "severity_by_kind" in loc):
        return f"{where}: unknown severity {error.get('input')!r}; expected one of {', '.join(SEVERITIES)}"
    if kind == "window_too_long":  # found on the whole pack: the context says where
        context = error.get("ctx", {})
        return f"{context['path']}: bad threshold {context['value']}: {error['msg']}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{where}: bad threshold {error.get('input')!r}: {error['msg']}"
    return f"{where}: {error['msg']}"


def validate_pack(document: Mapping[str, Any], source: str = "<rule pack>") -> RulePack:
    """Validate a pack already read (from TOML); raises :class:`RulePackError` naming every problem.
    Its ``local_rules`` modules are not imported here: ``iopcare.rulepacks`` does that on loading."""
    try:
        return RulePack.model_validate(document)
    except ValidationError as exc:
        raise RulePackError(source, [_problem(error) for error in exc.errors()]) from None

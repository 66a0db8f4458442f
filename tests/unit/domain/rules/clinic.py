"""A fictional patient's course written event by event, and ways to run the rules over it.

The scenarios in this folder build exactly the events they need (``Patient``) and look at what the
rules find: after one event (``findings_after``), or over a whole course with the absence sweep on
the stream clock (``course``), as the processor and the backtest do.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from iopcare.contract import (
    CheckInSubmitted,
    ConsentGranted,
    FamilyTherapyAttended,
    FamilyTherapyBooked,
    FamilyTherapyCancelled,
    FamilyTherapyNoShow,
    FellowshipAttended,
    InboundEvent,
    LevelOfCareChanged,
    PatientDischarged,
    PatientEnrolled,
    SessionAttended,
    SessionMissed,
    SessionScheduled,
    SoberLivingReported,
    ToxicologyResulted,
    new_event,
)
from iopcare.domain.backtest import Found
from iopcare.domain.backtest import findings_over as backtest
from iopcare.domain.engagement import PatientState
from iopcare.domain.intake import replay, take_in
from iopcare.domain.rules import RulePack, evaluate_event
from iopcare.domain.rules.pack import validate_pack
from iopcare.domain.signals import Clearance, Finding, Signal
from iopcare.rulepacks import DEFAULT_PACK

START = date(2026, 3, 2)  # a Monday: program week 1 is Mon 2 Mar - Sun 8 Mar
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUSE = "house-maple"
FAMILY = "fam-oak"


def at(day: int, hour: int = 18, minute: int = 0) -> datetime:
    """Program day ``day`` (0 = the first) at ``hour``:``minute`` UTC."""
    return datetime.combine(START + timedelta(days=day), time(hour, minute), tzinfo=UTC)


class Patient:
    """One patient's events, in the order they are written."""

    def __init__(self, patient_id: str = "pt-rules01") -> None:
        self.patient_id = patient_id
        self.events: list[InboundEvent] = []
        self._ids = itertools.count(1)

    def _add(
        self, cls: type, when: datetime, data: dict[str, Any], source: str = "ehr.clinic-a"
    ) -> InboundEvent:
        event = new_event(
            cls,
            subject=self.patient_id,
            source=source,
            data=data,
            time=when,
            id=f"{self.patient_id}-e{next(self._ids)}",
        )
        self.events.append(event)
        return event

    def enrolled(
        self,
        when: datetime = T0,
        fellowship: int = 2,
        days: int = 90,
        level: str = "2.1",
        counselor: str = "staff-c01",
        supervisor: str = "staff-s01",
    ) -> InboundEvent:
        return self._add(
            PatientEnrolled,
            when,
            {
                "level_of_care": level,
                "program_start": START.isoformat(),
                "planned_length_days": days,
                "weekly_plan": {
                    "group_sessions": 4,
                    "individual_sessions": 1,
                    "hours": 9,
                    "fellowship_meetings": fellowship,
                },
                "counselor_id": counselor,
                "supervisor_id": supervisor,
            },
        )

    def checkin(
        self,
        when: datetime,
        craving: int = 2,
        *,
        mood: int = 6,
        sleep: float = 7.0,
        use: bool = False,
        safety: bool = False,
        phq9: int | None = None,
        cssrs: bool | None = None,
    ) -> InboundEvent:
        return self._add(
            CheckInSubmitted,
            when,
            {
                "craving": craving,
                "mood": mood,
                "sleep_hours": sleep,
                "substance_use_reported": use,
                "safety_concern": safety,
                "phq9_item9": phq9,
                "cssrs_positive": cssrs,
            },
            source="checkin-app",
        )

    def session(
        self,
        starts: datetime,
        outcome: str = "attended",
        *,
        kind: str = "group",
        excused: bool = False,
        minutes: int | None = None,
        session_id: str | None = None,
        recorded: datetime | None = None,
    ) -> InboundEvent:
        """A session and its outcome, recorded shortly after it (or at ``recorded``: a correction)."""
        minutes = minutes or {"group": 180, "individual": 50, "family": 60}[kind]
        data: dict[str, Any] = {
            "session_id": session_id or f"ses-{starts:%m%d%H%M}-{kind}",
            "kind": kind,
            "starts_at": starts.isoformat(),
            "duration_minutes": minutes,
        }
        if outcome == "scheduled":
            return self._add(SessionScheduled, starts - timedelta(days=3), data)
        if outcome == "attended":
            return self._add(SessionAttended, recorded or starts + timedelta(minutes=minutes + 5), data)
        return self._add(
            SessionMissed, recorded or starts + timedelta(minutes=30), {**data, "excused": excused}
        )

    def screen(
        self, collected: datetime, positive: Iterable[str] = (), prescribed: Iterable[str] = ()
    ) -> InboundEvent:
        return self._add(
            ToxicologyResulted,
            collected + timedelta(hours=20),
            {
                "specimen_id": f"spec-{collected:%m%d%H%M}",
                "collected_at": collected.isoformat(),
                "substances_positive": sorted(positive),
                "prescribed_substances": sorted(prescribed),
            },
            source="lab.acme",
        )

    def consent(self, when: datetime, kind: str, recipient: str, scope: list[str]) -> InboundEvent:
        return self._add(
            ConsentGranted,
            when,
            {
                "recipient_kind": kind,
                "recipient_id": recipient,
                "scope": scope,
                "expires_at": (when + timedelta(days=365)).isoformat(),
                "consent_form_id": f"cf-{recipient}",
            },
        )

    def house_consent(self, when: datetime = T0 + timedelta(minutes=10)) -> InboundEvent:
        return self.consent(when, "sober_living_house", HOUSE, ["attendance", "housing", "toxicology"])

    def house(self, when: datetime, kind: str) -> InboundEvent:
        return self._add(
            SoberLivingReported,
            when,
            {"house_id": HOUSE, "kind": kind, "observed_at": when.isoformat()},
            source=f"house.{HOUSE}",
        )

    def family_consent(self, when: datetime = T0 + timedelta(minutes=15)) -> InboundEvent:
        return self.consent(when, "family_therapy_provider", FAMILY, ["attendance"])

    def family(
        self, when: datetime, status: str, booking: str, starts: datetime, cancelled_by: str = "family"
    ) -> InboundEvent:
        data: dict[str, Any] = {"booking_id": booking, "starts_at": starts.isoformat(), "provider_id": FAMILY}
        cls = {
            "booked": FamilyTherapyBooked,
            "cancelled": FamilyTherapyCancelled,
            "no_show": FamilyTherapyNoShow,
            "attended": FamilyTherapyAttended,
        }[status]
        if status == "cancelled":
            data["cancelled_by"] = cancelled_by
        return self._add(cls, when, data, source=f"family.{FAMILY}")

    def fellowship(self, on: date) -> InboundEvent:
        return self._add(
            FellowshipAttended,
            datetime.combine(on, time(21), tzinfo=UTC),
            {"fellowship": "NA", "attended_on": on.isoformat(), "verified": True},
            source="checkin-app",
        )

    def level(self, when: datetime, to: str, reason: str, from_level: str = "2.1") -> InboundEvent:
        return self._add(
            LevelOfCareChanged,
            when,
            {"from_level": from_level, "to_level": to, "decided_by": "staff-s01", "reason_code": reason},
        )

    def discharged(self, when: datetime) -> InboundEvent:
        return self._add(
            PatientDischarged, when, {"discharged_on": when.date().isoformat(), "disposition": "completed"}
        )

    def week_on_plan(self, week: int, craving: int = 2, screen: bool = True) -> None:
        """A program week that meets the whole plan: 4 groups (Mon, Tue, Thu, Sat) and an individual
        session (Wed) attended, 2 fellowship meetings, a check-in every evening, a negative screen."""
        first = 7 * (week - 1)
        for offset in range(7):
            if offset == 2:
                self.session(at(first + 2, 10), kind="individual")
            if offset in (0, 1, 3, 5):
                self.session(at(first + offset, 18 if offset != 5 else 10))
            if offset in (2, 4):
                self.fellowship(START + timedelta(days=first + offset))
            if screen and offset == 1:
                self.screen(at(first + 1, 9))
            self.checkin(at(first + offset, 20), craving)


# --- running the rules -----------------------------------------------------------------------------


def pack_with(changes: dict[str, Any], pack: RulePack = DEFAULT_PACK) -> RulePack:
    """The pack with some values changed, by dotted path (``"rules.silence.unlikely_below"``),
    validated as a clinic's pack would be."""
    document = pack.model_dump(mode="json", exclude_none=True)
    for path, value in changes.items():
        *parents, name = path.split(".")
        table = document
        for part in parents:
            table = table[part]
        table[name] = value
    return validate_pack(document, "test pack")


FIXED_THRESHOLDS = pack_with(
    {
        "rules.craving_rising.baseline_min_checkins": 60,  # never a baseline: the fixed rise alone
        "rules.craving_rising.at_least": 0,
        "rules.silence.baseline_min_checkins": 60,  # never a rhythm: the floors alone
        "rules.weekly_plan_shortfall.weeks_in_a_row": 1,  # every short week alerts
        "rules.weekly_plan_shortfall.unexcused_misses_at_once": 1,
        "rules.weekly_plan_shortfall.tier": "page",  # before tiers every alert paged and escalated
    }
)
"""The default pack with its personal baselines and tolerances off: the fixed numbers of the
clinical table alone (pack default-2026.2's behaviour), for tests of the mechanics around them."""


def findings_after(events: list[InboundEvent], pack: RulePack = DEFAULT_PACK) -> list[Finding]:
    """What the event rules find about the last event, once all events are taken in."""
    *before, last = events
    state = replay(before)[last.subject] if before else PatientState(patient_id=last.subject)
    intake = take_in(state, last)
    return [f for applied in intake.applied for f in evaluate_event(state, applied, pack)]


def state_of(events: list[InboundEvent]) -> PatientState:
    return replay(events)[events[0].subject]


def course(
    events: list[InboundEvent], pack: RulePack = DEFAULT_PACK, until: datetime | None = None
) -> list[Found]:
    """Every finding over a course: event rules after each event, absence checks on the stream clock."""
    return list(backtest(sorted(events, key=lambda e: e.time), pack, until=until))


def brief(findings: Iterable[Finding | Found]) -> list[tuple[str, str, str | None, str | None]]:
    """(kind, rule, severity, episode) of each finding: what a scenario asserts in full."""
    out = []
    for item in findings:
        finding = item.finding if isinstance(item, Found) else item
        if isinstance(finding, Signal):
            out.append(("signal", finding.rule_id, finding.severity, finding.episode))
        else:
            out.append(("clear", finding.rule_id, None, finding.episode))
    return out


def signals(found: Iterable[Found], rule_id: str | None = None) -> list[Signal]:
    return [
        f.finding
        for f in found
        if isinstance(f.finding, Signal) and (rule_id is None or f.finding.rule_id == rule_id)
    ]


def clearances(found: Iterable[Found], rule_id: str | None = None) -> list[Clearance]:
    return [
        f.finding
        for f in found
        if isinstance(f.finding, Clearance) and (rule_id is None or f.finding.rule_id == rule_id)
    ]


@dataclass(frozen=True)
class Alerts:
    """Signals grouped by dedup key, as the lifecycle would keep them (one alert per key)."""

    by_key: dict[str, list[Signal]]

    @classmethod
    def of(cls, found: Iterable[Found]) -> Alerts:
        by_key: dict[str, list[Signal]] = {}
        for item in found:
            if isinstance(item.finding, Signal):
                by_key.setdefault(item.finding.dedup_key(item.patient_id), []).append(item.finding)
        return cls(by_key)

    def rules(self) -> dict[str, int]:
        """Alerts (distinct dedup keys) per rule."""
        counts: dict[str, int] = {}
        for signals_of_key in self.by_key.values():
            counts[signals_of_key[0].rule_id] = counts.get(signals_of_key[0].rule_id, 0) + 1
        return counts
